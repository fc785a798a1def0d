"""Times a set of 2-D convolutions under this process's XLA flags: the measurement behind
:mod:`diffusion.xla_cpu`'s automatic choice of the CPU convolution kernel.

XLA reads its flags once, when the CPU backend starts, so each candidate kernel is timed
in a process of its own: :func:`diffusion.xla_cpu.measure` runs this file as a script
(``python conv_timing.py '<json>'``; the package is not imported, so a process starts in
the time JAX takes to import) with the candidate's ``XLA_FLAGS``. The argument is

  {"batch": B, "shapes": [[H, W, Cin, Cout, k], ...], "repeats": R}

and the one line printed is the JSON

  {"kernel": "ynnpack" | "eigen", "ms": [[forward, input grad, filter grad], ...]}

with, per shape, the fastest of ``R`` calls after one warm-up call (compilation
excluded), in milliseconds, of the three convolutions a training step runs for a
stride-1 "SAME" convolution of a [B, H, W, Cin] float32 input with a [k, k, Cin, Cout]
kernel: the forward pass, the gradient with respect to the input and with respect to
the kernel. ``kernel`` says what XLA compiled the forward convolutions to: "ynnpack" when
the optimized HLO of any holds a ``__ynn_fusion`` (XLA keeps convolutions smaller than
about 8x8x32 on Eigen even then), else "eigen" (XLA's own convolution).
"""

import json
import sys
import time

import jax
import numpy as np


def conv(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def fastest_ms(fn, args, repeats: int) -> float:
  """The fastest of ``repeats`` calls of ``fn(*args)``, after one warm-up call, in ms."""
  jax.block_until_ready(fn(*args))
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t0)
  return 1000 * best


def time_shapes(batch: int, shapes, repeats: int) -> dict:
  """``{"kernel": ..., "ms": [[fwd, d_input, d_kernel] per shape]}`` (module docstring)."""
  rng = np.random.default_rng(0)
  kernel, rows = "eigen", []
  for h, w, cin, cout, k in shapes:
    x = rng.standard_normal((batch, h, w, cin), np.float32)
    kern = (rng.standard_normal((k, k, cin, cout), np.float32) / np.sqrt(k * k * cin)
            ).astype(np.float32)
    g = np.ones((batch, h, w, cout), np.float32)
    fwd = jax.jit(conv).lower(x, kern).compile()
    if "__ynn_fusion" in fwd.as_text():
      kernel = "ynnpack"
    d_in = jax.jit(lambda x, w, g: jax.vjp(conv, x, w)[1](g)[0])
    d_kernel = jax.jit(lambda x, w, g: jax.vjp(conv, x, w)[1](g)[1])
    rows.append([fastest_ms(fwd, (x, kern), repeats),
                 fastest_ms(d_in, (x, kern, g), repeats),
                 fastest_ms(d_kernel, (x, kern, g), repeats)])
  return {"kernel": kernel, "ms": rows}


def main(argv) -> None:
  spec = json.loads(argv[1])
  result = time_shapes(int(spec["batch"]), [tuple(s) for s in spec["shapes"]],
                       int(spec.get("repeats", 3)))
  print(json.dumps(result), flush=True)


if __name__ == "__main__":
  main(sys.argv)

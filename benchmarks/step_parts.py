"""Where the CPU training step's time goes: forward, forward + backward, the whole step.

  python benchmarks/step_parts.py [--batch_size=8] [--repeats=3]

The DDPM CIFAR-10 U-Net of ``benchmarks/torch_side_by_side.py`` (the same two sides,
built by that script's classes): the network's forward pass in training mode (dropout
on), the gradient of a mean-square loss of its output (forward + backward), and the
whole train step (batch drawing, backward, clipping, Adam, EMA). Median ms of
``--repeats`` calls after one warm-up call (compilation excluded). The PyTorch rows are
added when torch and diffusers are installed. The differences of the rows are the
backward pass and the optimizer's share.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_side_by_side as side  # noqa: E402  (sets up the repository path)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from diffusion import xla_cpu  # noqa: E402


def median_ms(fn, repeats: int) -> float:
  fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return 1000 * sorted(times)[len(times) // 2]


def jax_parts(batch_size: int, images: np.ndarray, repeats: int):
  js = side.JaxSide(batch_size, images)
  module, params = js.family.module, js.state.params
  x = jnp.asarray(np.random.default_rng(1).standard_normal((batch_size, 32, 32, 3), np.float32))
  t = jnp.arange(batch_size, dtype=jnp.float32) * 100
  key = jax.random.PRNGKey(0)

  def forward(p, x, t):
    return module.apply({"params": p}, x, t, train=True, rngs={"dropout": key})

  fwd = jax.jit(forward)
  grad = jax.jit(jax.grad(lambda p, x, t: jnp.mean(forward(p, x, t) ** 2)))
  parts = [median_ms(lambda: jax.block_until_ready(fwd(params, x, t)), repeats),
           median_ms(lambda: jax.block_until_ready(grad(params, x, t)), repeats)]
  js.warm_up()   # after: the step donates (deletes) the state's arrays, params included
  return js, parts + [median_ms(lambda: js.run(1), repeats)]


def torch_parts(torch, diffusers, batch_size: int, images: np.ndarray, schedule, repeats: int):
  ts = side.TorchSide(torch, diffusers, batch_size, images, schedule, 0.9999)
  x = torch.randn(batch_size, 3, 32, 32)
  t = torch.arange(batch_size) * 100

  def forward_backward():
    ts.opt.zero_grad(set_to_none=True)
    (ts.model(x, t).sample ** 2).mean().backward()

  return [median_ms(lambda: ts.model(x, t).sample, repeats),
          median_ms(forward_backward, repeats),
          median_ms(lambda: ts.run(1), repeats)]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch_size", type=int, default=8)
  p.add_argument("--repeats", type=int, default=3)
  args = p.parse_args(argv)
  conv_flag = xla_cpu.configure()
  images = np.random.default_rng(0).integers(0, 256, (256, 32, 32, 3), np.uint8)
  js, rows = jax_parts(args.batch_size, images, args.repeats)
  table = [("JAX" + (" (convolutions on Eigen, diffusion.xla_cpu)" if conv_flag else ""), rows)]
  try:
    import diffusers  # pylint: disable=import-outside-toplevel
    import torch  # pylint: disable=import-outside-toplevel
    torch.set_num_threads(os.cpu_count())
    table.append((f"PyTorch {torch.__version__} + diffusers {diffusers.__version__}",
                  torch_parts(torch, diffusers, args.batch_size, images, js.schedule(),
                              args.repeats)))
  except ImportError:
    print("(PyTorch / diffusers not installed: JAX rows only)")
  print(f"\nDDPM CIFAR-10 U-Net, batch {args.batch_size}, float32, {os.cpu_count()} cores; "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}\n")
  print("| implementation | forward ms | forward + backward ms | whole step ms |")
  print("|---|---:|---:|---:|")
  for name, (f, fb, step) in table:
    print(f"| {name} | {f:.0f} | {fb:.0f} | {step:.0f} |")


if __name__ == "__main__":
  main()

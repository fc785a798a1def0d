"""The U-Net's convolutions one by one: forward, input gradient, filter gradient.

  DIFFUSION_CPU_CONVOLUTIONS=eigen python benchmarks/conv_kernels.py [--repeats=5]
  DIFFUSION_CPU_CONVOLUTIONS=ynnpack python benchmarks/conv_kernels.py

Times each of the three convolutions of a training step at the shapes of the DDPM
CIFAR-10 U-Net at batch 8 (3x3 at 32x32/128 down to 4x4/256 channels, and a 1x1
projection: a 1x1 Conv2d in diffusers' U-Net, a Dense layer in this project's, so its
JAX row compares the two kernels only), compilation excluded, median of ``--repeats``;
says which kernel XLA chose (YNNPACK when the optimized HLO holds a ``__ynn_fusion``,
else XLA's Eigen convolution). With PyTorch installed, the same three through
``torch.nn.functional.conv2d`` and ``torch.nn.grad`` (oneDNN) in the same process.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from diffusion import xla_cpu  # noqa: E402

# (batch, height, width, in channels, out channels, kernel size)
SHAPES = ((8, 32, 32, 128, 128, 3), (8, 16, 16, 256, 256, 3), (8, 8, 8, 256, 256, 3),
          (8, 4, 4, 256, 256, 3), (8, 32, 32, 256, 128, 1))


def median_ms(fn, repeats: int) -> float:
  fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return 1000 * sorted(times)[len(times) // 2]


def conv(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def jax_rows(repeats: int):
  rng = np.random.default_rng(0)
  for b, h, wd, ci, co, k in SHAPES:
    x = rng.standard_normal((b, h, wd, ci), np.float32)
    w = 0.05 * rng.standard_normal((k, k, ci, co), np.float32)
    g = np.ones((b, h, wd, co), np.float32)
    fwd = jax.jit(conv)
    d_in = jax.jit(lambda x, w, g: jax.vjp(conv, x, w)[1](g)[0])
    d_w = jax.jit(lambda x, w, g: jax.vjp(conv, x, w)[1](g)[1])
    kernel = "YNNPACK" if "__ynn_fusion" in fwd.lower(x, w).compile().as_text() else "Eigen"
    yield ((b, h, wd, ci, co, k), f"JAX ({kernel})",
           [median_ms(lambda f=f, a=a: jax.block_until_ready(f(*a)), repeats)
            for f, a in ((fwd, (x, w)), (d_in, (x, w, g)), (d_w, (x, w, g)))])


def torch_rows(torch, repeats: int):
  torch.manual_seed(0)
  for b, h, wd, ci, co, k in SHAPES:
    x = torch.randn(b, ci, h, wd)
    w = 0.05 * torch.randn(co, ci, k, k)
    g = torch.ones(b, co, h, wd)
    pad = k // 2
    with torch.no_grad():
      times = [median_ms(lambda: torch.nn.functional.conv2d(x, w, padding=pad), repeats),
               median_ms(lambda: torch.nn.grad.conv2d_input(x.shape, w, g, padding=pad),
                         repeats),
               median_ms(lambda: torch.nn.grad.conv2d_weight(x, w.shape, g, padding=pad),
                         repeats)]
    yield (b, h, wd, ci, co, k), f"PyTorch {torch.__version__} (oneDNN)", times


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--repeats", type=int, default=5)
  args = p.parse_args(argv)
  xla_cpu.configure()
  rows = list(jax_rows(args.repeats))
  try:
    import torch  # pylint: disable=import-outside-toplevel
    torch.set_num_threads(os.cpu_count())
    rows += list(torch_rows(torch, args.repeats))
  except ImportError:
    print("(PyTorch not installed: JAX rows only)")
  print(f"float32, {os.cpu_count()} cores; GFLOP = 2 B H W Cin Cout k² per convolution\n")
  print("| [B, H, W, Cin, Cout, k] | GFLOP | implementation | forward ms | input grad ms "
        "| filter grad ms |")
  print("|---|---:|---|---:|---:|---:|")
  for (b, h, wd, ci, co, k), name, (f, di, dw) in sorted(rows, key=lambda r: (r[0], r[1])):
    gflop = 2 * b * h * wd * ci * co * k * k / 1e9
    print(f"| {[b, h, wd, ci, co, k]} | {gflop:.2f} | {name} | {f:.1f} | {di:.1f} | {dw:.1f} |")


if __name__ == "__main__":
  main()

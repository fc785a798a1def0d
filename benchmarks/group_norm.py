"""GroupNorm on XLA:CPU: one reduction over a [B, H, W, G, C/G] view against the
project's layer (spatial axes first, then the group's channels).

  python benchmarks/group_norm.py [--repeats=7]

Both are the two-pass form (the mean subtracted before squaring). Times the forward
pass and the gradient of sum(silu(GroupNorm(x)) * w) with respect to x, scale and
bias at the activation shapes of the DDPM CIFAR-10 U-Net at batch 8; compilation
excluded, median of ``--repeats`` calls. Prints a table and the largest relative
difference of the two layers' gradients.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from diffusion import xla_cpu  # noqa: E402
from diffusion.models.layers import GroupNorm  # noqa: E402

SHAPES = ((8, 32, 32, 128), (8, 32, 32, 256), (8, 16, 16, 256), (8, 8, 8, 256), (8, 4, 4, 256))
GROUPS = 32


def one_reduction(x, scale, bias):
  """The former layer: statistics by one reduction over axes (H, W, C/G) of a 5-D view."""
  c = x.shape[-1]
  g = x.reshape(*x.shape[:-1], GROUPS, c // GROUPS)
  axes = tuple(range(1, g.ndim - 2)) + (g.ndim - 1,)
  mean = jnp.mean(g, axis=axes, keepdims=True)
  var = jnp.mean(jnp.square(g - mean), axis=axes, keepdims=True)
  return ((g - mean) * jax.lax.rsqrt(var + 1e-6)).reshape(x.shape) * scale + bias


def project_layer(x, scale, bias):
  return GroupNorm(num_groups=GROUPS).apply({"params": {"scale": scale, "bias": bias}}, x)


def median_ms(fn, *args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return 1000 * sorted(times)[len(times) // 2]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--repeats", type=int, default=7)
  args = p.parse_args(argv)
  xla_cpu.configure()
  rng = np.random.default_rng(0)
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, float32, {GROUPS} groups\n")
  print("| activation [B, H, W, C] | one reduction: fwd ms | grad ms | project layer: fwd ms "
        "| grad ms | grad rel. diff |")
  print("|---|---:|---:|---:|---:|---:|")
  for shape in SHAPES:
    x = jnp.asarray(3 * rng.standard_normal(shape, np.float32) + 1)
    w = jnp.asarray(rng.standard_normal(shape, np.float32))
    scale = jnp.asarray(rng.uniform(0.5, 1.5, shape[-1]).astype(np.float32))
    bias = jnp.zeros(shape[-1])
    row, grads = [], []
    for layer in (one_reduction, project_layer):
      loss = lambda x, s, b, layer=layer: jnp.sum(jax.nn.silu(layer(x, s, b)) * w)  # noqa: E731
      grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
      row += [median_ms(jax.jit(layer), x, scale, bias, repeats=args.repeats),
              median_ms(grad, x, scale, bias, repeats=args.repeats)]
      grads.append(grad(x, scale, bias))
    diff = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)))
               for a, b in zip(*grads))
    print(f"| {list(shape)} | {row[0]:.1f} | {row[1]:.1f} | {row[2]:.1f} | {row[3]:.1f} "
          f"| {diff:.1e} |")


if __name__ == "__main__":
  main()

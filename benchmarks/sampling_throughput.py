"""Sampling throughput (images/s) of DDPM ancestral and DDIM with a paper U-Net.

Builds the model of a config (default: configs/ddpm/cifar10.py, the 35.7M-parameter
DDPM CIFAR-10 U-Net) with random weights and times ``diffusion.sample``:
ancestral with T = 1000 steps and DDIM with 50 steps. Both samplers cost one
U-Net evaluation per step plus a few elementwise ops, so on slow machines
``--measure_steps K`` times a K-step chain (ancestral: the respaced K-step
chain; DDIM: K sub-sequence steps) and extrapolates per step to the full step
count; the table says which rows were extrapolated. Compilation is timed
separately (first call) and excluded from images/s.

  python benchmarks/sampling_throughput.py --batch_size 4 --measure_steps 4
  python benchmarks/sampling_throughput.py --batch_size 256 --measure_steps 0   # full chains (GPU)
"""

import argparse
import importlib
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from diffusion import make_eps_fn, make_model, make_process, sample, xla_cpu  # noqa: E402


def _time_run(fn, repeats):
  """Best wall time of ``repeats`` calls (the caller has already compiled fn)."""
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - t0)
  return best


def main():
  xla_cpu.configure()  # before the first computation (diffusion/xla_cpu.py)
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--config", default="configs.ddpm.cifar10", help="config module")
  ap.add_argument("--batch_size", type=int, default=4)
  ap.add_argument("--ancestral_steps", type=int, default=1000)
  ap.add_argument("--ddim_steps", type=int, default=50)
  ap.add_argument("--measure_steps", type=int, default=4,
                  help="steps actually run per chain (0 = the full chain)")
  ap.add_argument("--repeats", type=int, default=2)
  ap.add_argument("--dtype", default=None, help="override model.dtype (float32|bfloat16)")
  args = ap.parse_args()

  config = importlib.import_module(args.config).get_config()
  if args.dtype:
    config.model.dtype = args.dtype
  process = make_process(config.diffusion)
  module = make_model(config.model, data_cfg=config.data)
  shape = (args.batch_size, config.data.image_size, config.data.image_size,
           config.data.num_channels)
  key = jax.random.PRNGKey(0)
  x = jnp.zeros(shape, jnp.float32)
  params = jax.jit(lambda k: module.init(k, x, jnp.zeros((shape[0],), jnp.float32),
                                         train=False))(key)["params"]
  n_params = sum(p.size for p in jax.tree_util.tree_leaves(params))

  # Parameters travel as arguments of the compiled sampler (not baked-in constants).
  def apply(params, x_t, t):
    return make_eps_fn(module, params, process, config.model)(x_t, t)
  eps_fn = jax.tree_util.Partial(apply, params)

  rows = []
  T = process.num_timesteps
  for method, full in (("ancestral", args.ancestral_steps), ("ddim", args.ddim_steps)):
    run_steps = full if args.measure_steps <= 0 else min(args.measure_steps, full)
    if method == "ancestral":
      cfg = dict(method="ancestral", num_steps=0 if run_steps == T else run_steps)
    else:
      # Same per-step work as the 50-step chain; DDIM's τ has exactly K elements.
      cfg = dict(method="ddim", num_steps=run_steps, eta=0.0)
    fn = lambda cfg=cfg: sample(eps_fn, process, shape, key, cfg)  # noqa: E731
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    best = _time_run(fn, args.repeats)
    per_step = best / run_steps
    total = per_step * full
    rows.append((method, full, run_steps, per_step, total, args.batch_size / total,
                 max(first - best, 0.0)))

  dev = jax.devices()[0]
  print(f"# {config.model.name} from {args.config}: {n_params:,} params, dtype "
        f"{config.model.dtype}, batch {args.batch_size}, image {shape[1:]}")
  print(f"# jax {jax.__version__} on {dev.platform} ({dev.device_kind}), "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
  print("| sampler | steps | steps timed | s/step | s/batch | images/s | 50k samples (h) "
        "| compile s |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|")
  for method, full, run, per_step, total, ips, comp in rows:
    timed = f"{run}" + (" (extrapolated)" if run < full else "")
    print(f"| {method} | {full} | {timed} | {per_step:.4f} | {total:.1f} | {ips:.4g} | "
          f"{50_000 / ips / 3600:.2f} | {comp:.1f} |")


if __name__ == "__main__":
  main()

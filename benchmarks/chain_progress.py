"""What the sample grid's progress bar costs: one compiled chain vs the same chain in
~20 compiled segments with a report after each (``run_plan(on_progress=...)``).

Times ``family.sample_fn`` of a config (random U-Net weights) both ways, interleaved,
best of ``--repeats`` after a compiling call each; prints seconds per chain, the ratio
and whether the samples are identical.

  python benchmarks/chain_progress.py --config configs.ddpm.digits --steps 200
"""

import argparse
import importlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from diffusion import families, xla_cpu  # noqa: E402


def main():
  xla_cpu.configure()  # before the first computation (diffusion/xla_cpu.py)
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--config", default="configs.ddpm.digits", help="config module")
  ap.add_argument("--steps", type=int, default=200, help="sampling.num_steps (0 = all)")
  ap.add_argument("--num", type=int, default=64, help="samples per chain")
  ap.add_argument("--repeats", type=int, default=3)
  args = ap.parse_args()

  config = importlib.import_module(args.config).get_config()
  config.sampling.num_steps = args.steps
  family = families.make_family(config)
  params = family.init_params(jax.random.PRNGKey(0))
  reports = []
  fns = {"one program": family.sample_fn(args.num),
         "segments + reports": family.sample_fn(args.num,
                                                on_progress=lambda d, n: reports.append(d))}
  key = jax.random.PRNGKey(1)
  out, best = {}, {name: float("inf") for name in fns}
  for name, fn in fns.items():   # compile
    out[name] = np.asarray(fn(params, key))
  for _ in range(args.repeats):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      np.asarray(fn(params, key))
      best[name] = min(best[name], time.perf_counter() - t0)
  dev = jax.devices()[0]
  print(f"{args.config}, {family.describe_sampling()}, {args.num} samples, "
        f"{dev.platform} ({dev.device_kind}), best of {args.repeats}")
  for name, seconds in best.items():
    print(f"  {name:20s} {seconds:8.3f} s")
  print(f"  ratio {best['segments + reports'] / best['one program']:.3f}; reports per chain "
        f"{len(reports) // (args.repeats + 1)}; identical samples: "
        f"{np.array_equal(*out.values())}")


if __name__ == "__main__":
  main()

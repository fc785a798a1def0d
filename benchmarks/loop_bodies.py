"""What a loop around the train step costs: ``steps_per_call`` (lax.scan) and populations
(vmap or lax.map over the members), against one plain jitted step.

  python benchmarks/loop_bodies.py [--configs=configs/ddpm/digits.py,configs/ddpm/toy_mixture.py]
      [--population=2] [--calls=3]

For each config, prints seconds per train step (per member-step for populations) of
  single              one jitted train step per call
  scan k=5, rolled    five steps in one call as a loop (lax.scan)
  scan k=5, unrolled  the five steps written out one after another (lax.scan, unroll)
  scan k=5            what training.steps_per_call = 5 compiles to (scan_steps' choice)
  vmap P              P members in one call, jax.vmap over the stacked train states
  map P               P members in one call, one after another (lax.map)
after one warm-up call, and the seconds that warm-up call took (compilation included;
this script does not use the persistent compilation cache). On XLA:CPU a convolutional network's
gradient convolutions run as a generic loop nest inside a loop body (rolled scan, map),
far slower than at the top level; scan_steps unrolls there (diffusion.xla_cpu).
"""

import argparse
import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from diffusion import families, xla_cpu  # noqa: E402
from diffusion.train import optim
from diffusion.data import make_source  # noqa: E402
from diffusion.reproduce.common import load_config_file  # noqa: E402
from diffusion.train.loop import initial_state  # noqa: E402
from diffusion.train.population import _population_step, _stack  # noqa: E402
from diffusion.train.step import scan_steps, train_step  # noqa: E402


def _time(fn, state, data, calls):
  """(seconds per call after a warm-up call, seconds of the warm-up call)."""
  t0 = time.perf_counter()
  state, m = fn(state, data)
  jax.block_until_ready(m)
  warm = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(calls):
    state, m = fn(state, data)
  jax.block_until_ready(m)
  return (time.perf_counter() - t0) / calls, warm


def measure(path: str, population: int, calls: int, strategies=("vmap", "map")):
  cfg = load_config_file(path)
  fam = families.make_family(cfg)
  opt = optim.make_optimizer(cfg.optim)
  src = make_source(cfg.data)
  data = jax.device_put(src.arrays)
  step = functools.partial(train_step, loss_fn=fam.loss_fn, optimizer=opt,
                           get_batch=src.batch_fn(cfg.training.batch_size))
  state = initial_state(fam, opt)
  rows = [("single", *_time(jax.jit(step), state, data, calls))]
  for name, unroll in (("scan k=5, rolled", False), ("scan k=5, unrolled", True),
                       ("scan k=5 (scan_steps' choice)", None)):
    sec, warm = _time(jax.jit(scan_steps(step, 5, False, unroll=unroll)), state, data, calls)
    rows.append((name, sec / 5, warm))
  for strategy in strategies:
    stacked = jax.tree.map(jnp.asarray, _stack([jax.device_get(state)] * population))
    fn = jax.jit(_population_step(step, strategy, True))
    sec, warm = _time(fn, stacked, data, calls)
    rows.append((f"{strategy} P={population}", sec / population, warm))
  return cfg.model.name, rows


def main():
  xla_cpu.configure()  # before the first computation (diffusion/xla_cpu.py)
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--configs", default="configs/ddpm/digits.py,configs/ddpm/toy_mixture.py")
  ap.add_argument("--population", type=int, default=2)
  ap.add_argument("--calls", type=int, default=3)
  ap.add_argument("--populations", default="vmap,map",
                  help="Population strategies to time (comma-separated; empty: none).")
  args = ap.parse_args()
  dev = jax.devices()[0]
  print(f"# jax {jax.__version__} on {dev.platform} ({dev.device_kind}), {os.cpu_count()} CPUs")
  print("| config | model | loop | s per (member-)step | vs single | first call s |")
  print("|---|---|---|---:|---:|---:|")
  strategies = tuple(s for s in args.populations.split(",") if s)
  for path in args.configs.split(","):
    model, rows = measure(path, args.population, args.calls, strategies)
    base = rows[0][1]
    for name, sec, warm in rows:
      print(f"| {path} | {model} | {name} | {sec:.4f} | {sec / base:.2f}x | {warm:.1f} |",
            flush=True)


if __name__ == "__main__":
  main()

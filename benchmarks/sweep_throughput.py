"""Wall time of one sweep run sequentially and as a vmapped population, and the
population sizes that fit in memory.

  python benchmarks/sweep_throughput.py --config=configs/ddpm/toy_mixture.py \\
      --sweep=lr_seed --steps=200 [--populations=1,2,4,8,16,32]

Both modes train the same points for ``--steps`` steps in fresh folders (samples and
evaluations off, one checkpoint at the end) and are timed end to end, compilation
included, since that is what a researcher waits for. The memory table compiles the
vmapped step for each population size P and reads XLA's memory analysis: the
arguments (P train states and the data) plus the temporaries of one step.
"""

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402

from ml_collections import config_flags  # noqa: E402,F401 - config files import it

from diffusion import families, sweeps, xla_cpu  # noqa: E402
from diffusion.train import optim
from diffusion.data import make_source  # noqa: E402
from diffusion.sweeps.grid import load_sweep  # noqa: E402
from diffusion.train.loop import initial_state  # noqa: E402
from diffusion.train.step import scan_steps, train_step  # noqa: E402


def load_config(path):
  import importlib.util  # pylint: disable=import-outside-toplevel
  spec = importlib.util.spec_from_file_location("bench_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def timed_sweep(config, path, spec, mode):
  folder = tempfile.mkdtemp(prefix=f"sweep_{mode}_")
  try:
    start = time.perf_counter()
    sweeps.run_sweep(config, path, spec, folder, mode=mode)
    return time.perf_counter() - start
  finally:
    shutil.rmtree(folder, ignore_errors=True)


def population_memory(config, sizes):
  """[(P, argument bytes, temporary bytes)] of the compiled vmapped train step."""
  family = families.make_family(config)
  opt = optim.make_optimizer(config.optim)
  source = make_source(config.data)
  one = jax.eval_shape(lambda: initial_state(family, opt))
  step = functools.partial(train_step, loss_fn=family.loss_fn, optimizer=opt,
                           get_batch=source.batch_fn(config.training.batch_size))
  data = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), source.arrays)
  rows = []
  for p in sizes:
    states = jax.tree.map(lambda s: jax.ShapeDtypeStruct((p, *s.shape), s.dtype), one)
    call = jax.jit(scan_steps(jax.vmap(step, in_axes=(0, None)), 1, False))
    mem = call.lower(states, data).compile().memory_analysis()
    rows.append((p, mem.argument_size_in_bytes, mem.temp_size_in_bytes))
  return rows


def main():
  xla_cpu.configure()  # before the first computation (diffusion/xla_cpu.py)
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--config", default="configs/ddpm/toy_mixture.py")
  ap.add_argument("--sweep", default="lr_seed")
  ap.add_argument("--steps", type=int, default=200)
  ap.add_argument("--populations", default="1,2,4,8,16,32")
  ap.add_argument("--modes", default="sequential,vmap")
  args = ap.parse_args()
  config = load_config(args.config)
  t = config.training
  t.num_train_steps = args.steps
  t.log_every = t.checkpoint_every = args.steps
  t.sample_every = 0
  n = len(load_sweep(args.config, args.sweep))
  dev = jax.devices()[0]
  print(f"# {args.config} --sweep={args.sweep}: {n} points x {args.steps} steps, batch "
        f"{t.batch_size}; jax {jax.__version__}, {jax.device_count()} x {dev.device_kind}, "
        f"{os.cpu_count()} CPUs")
  times = {m: timed_sweep(config, args.config, args.sweep, m) for m in args.modes.split(",")}
  print("| mode | wall time (s) | per point (s) |")
  print("|---|---:|---:|")
  for mode, sec in times.items():
    print(f"| {mode} | {sec:.1f} | {sec / n:.1f} |")
  if "sequential" in times and "vmap" in times:
    print(f"speed-up of vmap: {times['sequential'] / times['vmap']:.2f}x")
  total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  print(f"\n| population P | arguments (MB) | step temporaries (MB) | total (MB) | fits in "
        f"{total / 2**30:.0f} GiB |")
  print("|---:|---:|---:|---:|---|")
  for p, arg, tmp in population_memory(config, [int(x) for x in args.populations.split(",")]):
    print(f"| {p} | {arg / 2**20:.1f} | {tmp / 2**20:.1f} | {(arg + tmp) / 2**20:.1f} | "
          f"{'yes' if arg + tmp < 0.8 * total else 'no'} |")


if __name__ == "__main__":
  main()

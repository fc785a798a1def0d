"""What each shipped config costs to train: its step on this machine, and the whole run.

  python benchmarks/config_costs.py [--configs=ddpm/quickstart,ddpm/cifar10:8,...]
      [--seconds=20] [--peak_tflops=989]

For each config (``NAME`` or ``NAME:B``): the loop's own compiled step (``train_step`` with
the config's network, loss and optimizer, ``steps_per_call`` 1) at batch B (default: the
config's ``training.batch_size``), timed over at least 2 calls and about ``--seconds``
after a compiling call, each config in its own process. Data: the config's own source
when it lives in memory here (digits, toys), else random uint8 images of the config's shape
drawn on the device as an in-memory set is. A step at a smaller batch than the config's is
extrapolated linearly to the config's batch (a lower bound on a 2-core CPU, where a
batch of 8 already keeps both cores busy: the cost per image stays, the fixed cost per
step is counted once per small batch). Prints one table row per config: parameters,
batch timed, wall and CPU seconds per step there, the step at the config's batch with
all cores busy (CPU seconds over the cores: what a machine that runs nothing else
gives; a shared machine's wall time counts the others' work), the config's
``num_train_steps`` and the whole run's time on this machine, XLA's FLOPs per step
(cost analysis) and, from them, the least time the run could take on an accelerator of
``--peak_tflops`` dense TFLOP/s (989: an H100 SXM in bf16): a lower bound, not an estimate.
"""

import functools
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHIPPED = ("ddpm/quickstart", "ddpm/digits", "dpm/digits", "ncsn/digits", "ddpm/toy_mixture",
           "ncsn/toy_mixture", "dpm/swiss_roll", "ddpm/mnist:16", "dpm/mnist:16",
           "ncsn/digits_refinenet", "ncsn/mnist:16", "ddpm/cifar10:4", "ncsn/cifar10:4",
           "ncsn/ncsnv2_cifar10:4", "ddpm/celebahq_256:1", "ncsn/ncsnv2_celeba:2",
           "ncsn/ncsnv2_church:1", "vae/digits", "vae/mnist")


def measure(name: str, batch: int, seconds: float) -> dict:
  """Times the config's train step at ``batch`` (this process); returns the row's facts."""
  import importlib  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from diffusion import cli  # pylint: disable=import-outside-toplevel
  from diffusion.config import checks  # pylint: disable=import-outside-toplevel
  from diffusion.data import make_source  # pylint: disable=import-outside-toplevel
  from diffusion.errors import ConfigError  # pylint: disable=import-outside-toplevel
  from diffusion.train import optim, sharding  # pylint: disable=import-outside-toplevel
  from diffusion.train.layout import Layout, Member  # pylint: disable=import-outside-toplevel
  from diffusion.train.loop import initial_state  # pylint: disable=import-outside-toplevel
  from diffusion.train.step import scan_steps, train_step  # pylint: disable=import-outside-toplevel
  from benchmarks.train_throughput import synthetic_batches  # pylint: disable=import-outside-toplevel
  cli.start_computing()
  config = importlib.import_module("configs." + name.replace("/", ".")).get_config()
  full_batch, total = config.training.batch_size, config.training.num_train_steps
  config.training.batch_size = batch or full_batch
  config.training.steps_per_call = 1
  mesh = sharding.make_mesh(jax.devices())
  cfg = checks.validate(config, num_devices=mesh.size)
  member = Member(cfg, "/nonexistent")
  family, t = member.family, cfg.training
  try:
    source = make_source(cfg.data, split=cfg.data.split)
    get_batch, data = source.batch_fn(t.batch_size), source.arrays
    assert source.device_resident
    what = "its own data"
  except (ConfigError, AssertionError):
    images = np.random.default_rng(0).integers(0, 256, (512, *family.example_shape), np.uint8)
    get_batch, data, what = synthetic_batches(t.batch_size), {"images": images}, "random images"
    raw = get_batch
    get_batch = lambda d, key: raw(d["images"], key)   # noqa: E731
  optimizer = optim.make_optimizer(cfg.optim)
  layout = Layout([member], mesh)
  step_fn = layout.step_fn(functools.partial(train_step, loss_fn=family.loss_fn,
                                             optimizer=optimizer, get_batch=get_batch),
                           shared_data=True)
  call = jax.jit(scan_steps(step_fn, 1, data_per_step=False), donate_argnums=(0,))
  data = sharding.replicate(data, mesh)
  state = layout.place([initial_state(family, optimizer)])
  n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
  start = time.perf_counter()
  compiled = call.lower(state, data).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float((cost or {}).get("flops", float("nan")))
  state, m = compiled(state, data)
  jax.block_until_ready(m["loss"])
  compile_s = time.perf_counter() - start
  calls, start, cpu = 0, time.perf_counter(), time.process_time()
  while calls < 2 or time.perf_counter() - start < seconds:
    state, m = compiled(state, data)
    jax.block_until_ready(m["loss"])
    calls += 1
  per_step = (time.perf_counter() - start) / calls
  cpu_per_step = (time.process_time() - cpu) / calls
  return dict(config=name, params=n_params, batch=t.batch_size, full_batch=full_batch,
              seconds_per_step=per_step, cpu_seconds_per_step=cpu_per_step, total_steps=total,
              flops_per_step=flops, compile_seconds=compile_s, calls=calls, data=what,
              cores=os.cpu_count())


def _hours(s: float) -> str:
  if s < 1:
    return "< 1 s"
  if s < 120:
    return f"{s:.0f} s"
  if s < 3600:
    return f"{s / 60:.0f} min"
  if s < 2 * 86400:
    return f"{s / 3600:.1f} h"
  return f"{s / 86400:.0f} days"


def main() -> None:
  args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
  if "--one" in sys.argv:   # a child: one config, its facts as JSON
    name, _, batch = args["config"].partition(":")
    print(json.dumps(measure(name, int(batch or 0), float(args.get("seconds", 20)))))
    return
  peak = float(args.get("peak_tflops", 989)) * 1e12
  names = args["configs"].split(",") if "configs" in args else SHIPPED
  print("| config | parameters | batch timed | wall s/step there | CPU s/step there | "
        "s/step at the config's batch, all cores busy | steps | whole run, this CPU | "
        "FLOP/step (config's batch) | least time at peak |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
  for name in names:
    res = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", f"--config={name}",
                          f"--seconds={args.get('seconds', 20)}"], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if res.returncode:
      print(f"| {name} | failed: {(res.stderr.strip().splitlines() or ['?'])[-1][:120]} |",
            flush=True)
      continue
    r = json.loads(res.stdout.strip().splitlines()[-1])
    scale = r["full_batch"] / r["batch"]
    # The step's CPU time over the cores: the wall time of a machine whose cores this run
    # has to itself (on a shared machine the wall time counts the others' work too).
    at_full = r["cpu_seconds_per_step"] / r["cores"] * scale
    flops = r["flops_per_step"] * scale
    print(f"| `{r['config']}` | {r['params']:,} | {r['batch']} | {r['seconds_per_step']:.3g} | "
          f"{r['cpu_seconds_per_step']:.3g} | "
          f"{at_full:.3g}{' (x%g)' % scale if scale != 1 else ''} | {r['total_steps']:,} | "
          f"{_hours(at_full * r['total_steps'])} | {flops:.3g} | "
          f"{_hours(flops * r['total_steps'] / peak)} |", flush=True)


if __name__ == "__main__":
  main()

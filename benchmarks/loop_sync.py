"""What the training loop's wait for each call costs: steps/s with every call's loss
awaited (the loop since issue 31: its bar counts finished steps and Ctrl-C saves within a
call) against calls queued without a wait (the loop before: XLA ran up to ``log_every``
calls behind the bar).

  python benchmarks/loop_sync.py --config=configs/ddpm/quickstart.py --calls=100 --rounds=5

The call is the loop's own (``train_step`` scanned ``training.steps_per_call`` times,
the state donated, the config's data drawn on the device); the two ways alternate round
by round, so a machine's load falls on both alike. Prints a table: median steps/s of
each way and their ratio.
"""

import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from diffusion import xla_cpu  # noqa: E402
from diffusion.config import checks  # noqa: E402
from diffusion.data import make_source  # noqa: E402
from diffusion.train import optim, sharding  # noqa: E402
from diffusion.train.layout import Layout, Member  # noqa: E402
from diffusion.train.loop import initial_state  # noqa: E402
from diffusion.train.step import scan_steps, train_step  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/ddpm/quickstart.py",
                                          "Config file.")
_CALLS = flags.DEFINE_integer("calls", 100, "Calls per round and way.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Rounds (each runs both ways).")


def main(argv):
  del argv
  xla_cpu.configure()
  mesh = sharding.make_mesh(jax.devices())
  cfg = checks.validate(_CONFIG.value, num_devices=mesh.size)
  layout = Layout([Member(cfg, "/nonexistent")], mesh)
  family, t = layout.members[0].family, cfg.training
  source = make_source(cfg.data, split=cfg.data.split)
  if not source.device_resident:
    raise SystemExit("this benchmark times device-resident data (the built-in digits)")
  optimizer = optim.make_optimizer(cfg.optim)
  step_fn = layout.step_fn(functools.partial(train_step, loss_fn=family.loss_fn,
                                             optimizer=optimizer,
                                             get_batch=source.batch_fn(t.batch_size)),
                           shared_data=True)
  call = jax.jit(scan_steps(step_fn, t.steps_per_call, data_per_step=False),
                 donate_argnums=(0,))
  data = sharding.replicate(source.arrays, mesh)
  state = layout.place([initial_state(family, optimizer)])
  state, m = call(state, data)              # compile
  jax.block_until_ready(m["loss"])
  rates = {"queued": [], "each awaited": []}
  for _ in range(_ROUNDS.value):
    for way in rates:
      start = time.perf_counter()
      for _ in range(_CALLS.value):
        state, m = call(state, data)
        if way == "each awaited":
          jax.block_until_ready(m["loss"])
      jax.block_until_ready(m["loss"])
      rates[way].append(_CALLS.value * t.steps_per_call / (time.perf_counter() - start))
  print(f"{cfg.model.name}, batch {t.batch_size}, steps_per_call {t.steps_per_call}, "
        f"{_CALLS.value} calls x {_ROUNDS.value} rounds, {mesh.size} x "
        f"{jax.devices()[0].device_kind}")
  print("| calls | median steps/s | rounds |")
  print("|---|---:|---|")
  for way, r in rates.items():
    print(f"| {way} | {np.median(r):.2f} | {', '.join(f'{x:.2f}' for x in r)} |")
  ratio = np.median(rates["each awaited"]) / np.median(rates["queued"])
  print(f"each awaited / queued: {ratio:.3f}")


if __name__ == "__main__":
  app.run(main)

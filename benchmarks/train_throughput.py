"""Training throughput (img/s) of a config's model on synthetic device-resident data.

  python benchmarks/train_throughput.py --config=configs/ddpm/cifar10.py \
      --batch_sizes=8,16 --steps=5 [--dtype=bfloat16] [--steps_per_call=1]

Times whole compiled train calls (forward, backward, Adam, EMA) after one
warm-up call that includes compilation; prints a table. Data are random uint8
images held on the device, drawn and scaled inside the step exactly as a
device-resident dataset is.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import functools  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from diffusion import families, xla_cpu  # noqa: E402
from diffusion.train import optim
from diffusion.train import sharding
from diffusion.data import preprocess  # noqa: E402
from diffusion.train.step import create_train_state, scan_steps, train_step  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/ddpm/cifar10.py", "Config file.")
_BATCHES = flags.DEFINE_list("batch_sizes", ["8", "16"], "Global batch sizes to time.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed calls per batch size.")
_DTYPE = flags.DEFINE_string("dtype", None, "Override config.model.dtype.")
_SPC = flags.DEFINE_integer("steps_per_call", 1, "Train steps scanned into one call.")
_PEAK = flags.DEFINE_float("peak_tflops", 0.0, "The device's dense peak (e.g. 989 for an "
                           "H100 SXM in bf16); adds the fraction of it the step reaches.")


def synthetic_batches(batch_size: int):
  """get_batch(images, key): B random uint8 images of the device array, flipped and scaled."""
  def get_batch(images, key):
    k_idx, k_pre = jax.random.split(key)
    idx = jax.random.randint(k_idx, (batch_size,), 0, images.shape[0])
    return preprocess(jnp.take(images, idx, axis=0), k_pre, centered=True,
                      uniform_dequantization=False, random_flip=True)
  return get_batch


def main(argv):
  xla_cpu.configure()  # before the first computation (diffusion/xla_cpu.py)
  del argv
  config = _CONFIG.value
  if _DTYPE.value:
    config.model.dtype = _DTYPE.value
  config.training.steps_per_call = _SPC.value
  family = families.make_family(config)
  images = np.random.default_rng(0).integers(0, 256, (2048, *family.example_shape), np.uint8)
  mesh = sharding.make_mesh()
  optimizer = optim.make_optimizer(config.optim)
  params = family.init_params(jax.random.PRNGKey(0))
  data = sharding.replicate(images, mesh)
  dev = jax.devices()[0]
  n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
  print(f"{config.model.name} {n_params:,} params, dtype {config.model.dtype}, {mesh.size} x "
        f"{dev.device_kind}, steps_per_call {_SPC.value}")
  rows = []
  for b in [int(x) for x in _BATCHES.value]:
    step = functools.partial(train_step, loss_fn=family.loss_fn, optimizer=optimizer,
                             get_batch=synthetic_batches(b),
                             batch_sharding=NamedSharding(mesh, P(sharding.DATA_AXIS)))
    step_fn = jax.jit(scan_steps(step, _SPC.value, data_per_step=False), donate_argnums=(0,))
    fresh = jax.tree.map(jnp.copy, params)  # the step donates (deletes) its input buffers
    state = sharding.replicate(create_train_state(fresh, optimizer, seed=0, ema_decay=0.9999,
                                                  loss_hparams=family.loss_hparams()), mesh)
    t0 = time.perf_counter()
    compiled = step_fn.lower(state, data).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float((cost or {}).get("flops", float("nan"))) / _SPC.value   # per train step
    mem = compiled.memory_analysis()
    peak_gb = float("nan") if mem is None else (
        mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
        - mem.alias_size_in_bytes) / 2**30
    state, m = compiled(state, data)
    jax.block_until_ready(m["loss"])
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(_STEPS.value):
      state, m = compiled(state, data)
    jax.block_until_ready(m["loss"])
    dt = (time.perf_counter() - t0) / (_STEPS.value * _SPC.value)
    rows.append((b, compile_s, dt * 1e3, b / dt, flops / b / 1e9, peak_gb,
                 flops / dt / 1e12))
  head = (f"{'batch':>6} {'compile+1st s':>14} {'ms/step':>10} {'img/s':>10} "
          f"{'GFLOP/img':>10} {'memory GiB':>11} {'TFLOP/s':>8}")
  print(head + (f" {'% of peak':>10}" if _PEAK.value else ""))
  for b, c, ms, ips, gf, gb, tf in rows:
    print(f"{b:>6} {c:>14.1f} {ms:>10.1f} {ips:>10.1f} {gf:>10.2f} {gb:>11.2f} {tf:>8.3f}"
          + (f" {100 * tf / _PEAK.value:>9.1f}%" if _PEAK.value else ""))
  print("GFLOP/img and memory: XLA's cost and memory analysis of the compiled step "
        "(forward, backward, Adam, EMA); memory = arguments + outputs + temporaries - aliased.")


if __name__ == "__main__":
  app.run(main)

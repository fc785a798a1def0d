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

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from diffusion import training  # noqa: E402
from diffusion.data.sources import ImageSource  # noqa: E402
from diffusion.models import make_model  # noqa: E402
from diffusion.processes import make_process  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/ddpm/cifar10.py", "Config file.")
_BATCHES = flags.DEFINE_list("batch_sizes", ["8", "16"], "Global batch sizes to time.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed calls per batch size.")
_DTYPE = flags.DEFINE_string("dtype", None, "Override config.model.dtype.")
_SPC = flags.DEFINE_integer("steps_per_call", 1, "Train steps scanned into one call.")


def main(argv):
  del argv
  config = _CONFIG.value
  if _DTYPE.value:
    config.model.dtype = _DTYPE.value
  config.training.steps_per_call = _SPC.value
  size, channels = config.data.image_size, config.data.num_channels
  images = np.random.default_rng(0).integers(0, 256, (2048, size, size, channels), np.uint8)
  source = ImageSource(name="synthetic", split="train", shape=(size, size, channels),
                       num_examples=len(images), arrays={"images": images}, device_resident=True,
                       centered=True, uniform_dequantization=False, random_flip=True)
  mesh = training.make_mesh()
  process = make_process(config.diffusion)
  module = make_model(config.model)
  optimizer = training.make_optimizer(config.optim)
  params = training.init_params(module, jax.random.PRNGKey(0), source.shape)
  data = training.replicate(source.arrays, mesh)
  dev = jax.devices()[0]
  print(f"{config.model.name} {training.count_params(params):,} params, dtype "
        f"{config.model.dtype}, {mesh.size} x {dev.device_kind}, steps_per_call {_SPC.value}")
  rows = []
  for b in [int(x) for x in _BATCHES.value]:
    config.training.batch_size = b
    step_fn = training.make_train_step(module, process, optimizer, config, source, mesh)
    fresh = jax.tree.map(jnp.copy, params)  # the step donates (deletes) its input buffers
    state = training.replicate(training.create_train_state(fresh, optimizer), mesh)
    t0 = time.perf_counter()
    state, m = step_fn(state, data)
    jax.block_until_ready(m["loss"])
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(_STEPS.value):
      state, m = step_fn(state, data)
    jax.block_until_ready(m["loss"])
    dt = (time.perf_counter() - t0) / (_STEPS.value * _SPC.value)
    rows.append((b, compile_s, dt * 1e3, b / dt))
  print(f"{'batch':>6} {'compile+1st s':>14} {'ms/step':>10} {'img/s':>10}")
  for b, c, ms, ips in rows:
    print(f"{b:>6} {c:>14.1f} {ms:>10.1f} {ips:>10.1f}")


if __name__ == "__main__":
  app.run(main)

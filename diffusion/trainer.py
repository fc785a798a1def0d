"""The training loop: config + workdir in, checkpoints, metrics and samples out.

``train(config, workdir)`` is what ``train.py`` runs; it is importable, so
notebooks and sweeps call it directly. Same workdir means resume: the latest
readable checkpoint is restored automatically, with step, EMA and logs intact.
"""

import json
import logging
import os
import signal
import sys
import time

import jax
import numpy as np

from diffusion import checkpoints, config_check, images, metric_writers, training
from diffusion.errors import ConfigError
from diffusion.model_fn import make_eps_fn

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
  """A training step produced a NaN or Inf loss."""


def build(config):
  """(process, module, source) for a validated config."""
  from diffusion.data import make_source
  from diffusion.models import make_model
  from diffusion.processes import make_process
  process = make_process(config.diffusion)
  module = make_model(config.model, data_cfg=config.data)
  source = make_source(config.data, split=config.data.split)
  return process, module, source


def make_sample_fn(module, process, config, shape, x0_range, out_sharding=None):
  """Jitted ``(params, key) -> samples`` of ``shape`` [N, ...] with config.sampling.

  ``x0_range`` is the data range x0_hat is clipped to (``source.x_range``:
  [-1, 1] or [0, 1] for images, None for unbounded toy data). ``out_sharding``
  (e.g. batch split over a mesh) lets XLA shard the whole chain over devices.
  """
  from diffusion.samplers import sample

  def sample_fn(params, key):
    eps_fn = make_eps_fn(module, params, process, config.model)
    return sample(eps_fn, process, shape, key, config.sampling, x0_range=x0_range)

  return jax.jit(sample_fn, out_shardings=out_sharding)


def write_config(config, workdir: str) -> None:
  """Writes the resolved config to ``<workdir>/config.json`` (human-readable).

  On resume with a changed config the previous file is kept as
  ``config.<unix time>.json`` so the history of a run stays visible.
  """
  path = os.path.join(workdir, "config.json")
  text = config.to_json_best_effort(indent=2, sort_keys=True)
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      old = f.read()
    if old == text:
      return
    os.replace(path, os.path.join(workdir, f"config.{int(time.time())}.json"))
    log.warning("config differs from the one this workdir was started with; "
                "the old one is kept beside config.json")
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)


def load_config(workdir: str):
  """The config a run was trained with, read back from ``<workdir>/config.json``."""
  import ml_collections
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise ConfigError(f"{path} does not exist; --workdir must be a training run's workdir.")
  with open(path, encoding="utf-8") as f:
    raw = json.load(f)
  return ml_collections.ConfigDict(_lists_to_tuples(raw))


def _lists_to_tuples(x):
  if isinstance(x, dict):
    return {k: _lists_to_tuples(v) for k, v in x.items()}
  if isinstance(x, list):
    return tuple(_lists_to_tuples(v) for v in x)
  return x


class _StopSignal:
  """Turns SIGTERM / SIGINT into a flag the loop checks between calls."""

  def __init__(self):
    self.received = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: leave signals alone
        pass
    return self

  def _handle(self, signum, frame):  # noqa: ARG002
    self.received = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def train(config, workdir: str, *, progress: bool = True, devices=None) -> dict:
  """Trains (or resumes) the run in ``workdir``; returns the final metrics.

  ``devices`` (default: all devices of all processes) form the data-parallel mesh.

  Raises:
    ConfigError: invalid config or unreadable/mismatched checkpoint.
    NonFiniteLossError: a NaN/Inf loss; the last good checkpoint is untouched.
  """
  mesh = training.make_mesh(devices)
  config_check.validate(config, num_devices=mesh.size)
  tcfg = config.training
  is_chief = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  if is_chief:
    write_config(config, workdir)

  process, module, source = build(config)
  # Step keys are fold_in(seed, step >= 0); initialisation uses its own salt.
  init_key = jax.random.fold_in(jax.random.PRNGKey(tcfg.seed), 2**31 - 1)
  params = training.init_params(module, init_key, source.shape)
  optimizer = training.make_optimizer(config.optim)
  state = training.create_train_state(params, optimizer)
  n_params = training.count_params(params)

  ckpt = checkpoints.Checkpointer(workdir, keep=tcfg.keep_checkpoints)
  state, restored_step = ckpt.restore_latest(state)
  state = training.replicate(state, mesh)
  step = int(state.step)
  dev = mesh.devices.flat[0]
  print(f"model: {config.model.name}, {n_params:,} parameters | devices: {mesh.size} x "
        f"{dev.platform} ({dev.device_kind}), {jax.process_count()} process(es)"
        f" | {'resumed from step ' + str(restored_step) if restored_step is not None else 'new run'}",
        flush=True)

  train_call = training.make_train_step(module, process, optimizer, config, source, mesh)
  data_stream = None
  if source.device_resident:
    data = training.replicate(source.arrays, mesh)
  else:
    # Each process reads its own 1/process_count of every global batch.
    data_stream = source.iterator(tcfg.batch_size, tcfg.seed, step, jax.process_index(),
                                  jax.process_count())

  writer = metric_writers.MetricWriter(workdir) if is_chief else None
  sample_fn = evaluator = None
  bar = _progress_bar(progress and is_chief, step, tcfg.num_train_steps)
  metrics, last_log_time, last_log_step = {}, time.time(), step
  k = tcfg.steps_per_call
  try:
    with _StopSignal() as stop:
      while step < tcfg.num_train_steps:
        if data_stream is not None:
          data = training.shard_batch(
              np.stack([next(data_stream) for _ in range(k)]), mesh, axis=1)
        state, metrics = train_call(state, data)
        step += k
        if bar is not None:
          bar.update(k)
        if step % tcfg.log_every == 0 or step >= tcfg.num_train_steps:
          _check_finite(state)
          now = time.time()
          scalars = {n: float(v) for n, v in metrics.items()}
          steps_per_s = (step - last_log_step) / max(now - last_log_time, 1e-9)
          scalars.update(steps_per_s=steps_per_s, img_per_s=steps_per_s * tcfg.batch_size)
          last_log_time, last_log_step = now, step
          if writer is not None:
            writer.write_scalars(step, scalars)
          if bar is not None:
            bar.set_postfix(loss=f"{scalars['loss']:.4f}", img_s=f"{scalars['img_per_s']:.0f}")
          elif is_chief:
            print(f"step {step}: loss {scalars['loss']:.5f}, {steps_per_s:.2f} steps/s, "
                  f"{scalars['img_per_s']:.0f} img/s", flush=True)
        done = step >= tcfg.num_train_steps
        if step % tcfg.checkpoint_every == 0 or done or stop.received:
          _check_finite(state)
          ckpt.save(step, state)
        if tcfg.sample_every and (step % tcfg.sample_every == 0 or done) and is_chief:
          sample_fn = sample_fn or make_sample_fn(
              module, process, config, (tcfg.num_samples, *source.shape), source.x_range)
          _write_samples(sample_fn, state, config, workdir, step, writer)
        if config.eval.every and (step % config.eval.every == 0 or done) and is_chief:
          evaluator = evaluator or _Evaluator(module, process, config, workdir, source)
          scalars = evaluator(state.ema_params, step)
          if writer is not None and scalars:
            writer.write_scalars(step, scalars)
        if stop.received:
          print(f"\nreceived {stop.received}: saved checkpoint {step}, exiting", flush=True)
          break
  finally:
    if bar is not None:
      bar.close()
    if writer is not None:
      writer.close()
    ckpt.close()
  final = {n: float(v) for n, v in metrics.items()}
  final["step"] = step
  if is_chief and metrics:
    print(f"done: step {step}, loss {final['loss']:.5f}, workdir {os.path.abspath(workdir)}",
          flush=True)
  return final


def _check_finite(state) -> None:
  bad = int(state.first_nonfinite_step)
  if bad >= 0:
    raise NonFiniteLossError(
        f"loss became NaN/Inf at step {bad}; stopped without saving, the last good "
        "checkpoint is intact. Lower optim.lr, enable optim.grad_clip or check the data.")


def _write_samples(sample_fn, state, config, workdir, step, writer) -> None:
  from diffusion.data import to_uint8
  key = jax.random.fold_in(jax.random.PRNGKey(config.training.seed + 1), step)
  x = np.asarray(sample_fn(state.ema_params, key))
  out = os.path.join(workdir, "samples")
  os.makedirs(out, exist_ok=True)
  if x.ndim == 4:
    imgs = to_uint8(x, config.data.centered)
    upscale = max(1, 64 // x.shape[1])
    grid = images.save_grid(os.path.join(out, f"step_{step:08d}.png"), imgs, upscale=upscale)
    if writer is not None:
      writer.write_images(step, "samples", grid)
  np.save(os.path.join(out, f"step_{step:08d}.npy"), x)


class _Evaluator:
  """Periodic evaluation with EMA parameters (config.eval): bits/dim on the eval
  split (VP variants) and FID/IS/KID of fresh samples (when eval.fid)."""

  def __init__(self, module, process, config, workdir, train_source):
    from diffusion.data import make_source
    self.module, self.process, self.config, self.workdir = module, process, config, workdir
    ecfg = config.eval
    # DDPM's bound: VP process, 8-bit images in [-1, 1] (the discretized decoder).
    self.bpd = (ecfg.bpd and hasattr(process, "alphas_cumprod") and train_source.is_image
                and config.data.centered)
    self.eval_source = make_source(config.data, split=config.data.eval_split) if self.bpd else None
    self.net = self.sample_fn = None
    if ecfg.fid:
      from diffusion import inception
      self.net = inception.load_inception(ecfg.inception_weights)
      self.train_source = train_source
      self.sample_fn = make_sample_fn(module, process, config,
                                      (config.sampling.batch_size, *train_source.shape),
                                      train_source.x_range)

  def __call__(self, params, step: int) -> dict:
    from diffusion import evaluation
    from diffusion.data import to_uint8
    cfg, out = self.config, {}
    key = jax.random.fold_in(jax.random.PRNGKey(cfg.training.seed + 2), step)
    if self.bpd:
      eps_fn = make_eps_fn(self.module, params, self.process, cfg.model)
      res = evaluation.bpd_of_source(eps_fn, self.process, self.eval_source,
                                     cfg.eval.bpd_num_examples, cfg.eval.batch_size, key,
                                     cfg.diffusion.var_type)
      out.update({"eval/bpd": res["bpd"], "eval/bpd_se": res["bpd_se"]})
    if self.sample_fn is not None:
      n, chunks = cfg.eval.fid_num_samples, []
      for i in range(-(-n // cfg.sampling.batch_size)):
        chunks.append(np.asarray(self.sample_fn(params, jax.random.fold_in(key, i))))
      imgs = to_uint8(np.concatenate(chunks)[:n], cfg.data.centered)
      stats = evaluation.fid_of_samples(
          imgs, self.net, self.train_source, cfg.eval.fid_num_samples, self.workdir,
          f"{cfg.data.dataset}_{cfg.data.split}_{cfg.data.image_size}px")
      out.update({f"eval/{k}": v for k, v in stats.items()})
    if out:
      print(f"eval at step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in out.items()),
            flush=True)
    return out


def _progress_bar(enabled: bool, start: int, total: int):
  if not enabled:
    return None
  from tqdm import tqdm
  return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, file=sys.stderr,
              mininterval=1.0)

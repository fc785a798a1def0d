"""The training loop: config + workdir in, checkpoints, metrics and samples out.

``train(config, workdir)`` is what ``train.py`` runs; it is importable, so notebooks
and sweeps call it directly. Same workdir means resume: the latest readable
checkpoint is restored automatically, with step, EMA and logs intact.

The path of one compiled call (``training.steps_per_call`` steps):

  validate config -> family (process, network, loss) -> data source -> optimizer
  -> restore or create TrainState -> jit(scan_steps(train_step)) -> per call:
     state, metrics = call(state, data)   # data: device arrays, or K host batches
     log / checkpoint / sample grid / evaluators, each when ``itstime``
"""

import functools
import logging
import os
import shutil
import signal
import sys
import time

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from tqdm import tqdm

from diffusion import config_check, evaluators, families, metric_writers, optimizers, runs
from diffusion import sharding
from diffusion.checkpoints import Checkpointer
from diffusion.data import make_source
from diffusion.errors import WorkdirError
from diffusion.train_step import (TrainState, create_train_state, scan_steps, train_hparams,
                                  train_step)

log = logging.getLogger(__name__)

# Parameters are initialised from fold_in(seed, INIT_SALT); steps use fold_in(seed, step >= 0).
INIT_SALT = 2**31 - 1


class NonFiniteLossError(RuntimeError):
  """A training step produced a NaN or Inf loss."""


def itstime(step: int, every: int, total: int) -> bool:
  """True at multiples of ``every`` and at the last step (never when ``every`` is 0)."""
  return every > 0 and (step % every == 0 or step == total)


def initial_state(family, optimizer) -> TrainState:
  """The step-0 train state of a run (parameters from fold_in(seed, INIT_SALT))."""
  t = family.config.training
  key = jax.random.fold_in(jax.random.PRNGKey(t.seed), INIT_SALT)
  return create_train_state(family.init_params(key), optimizer, seed=t.seed,
                            ema_decay=t.ema_decay, loss_hparams=family.loss_hparams())


def with_config_hyperparams(state: TrainState, family) -> TrainState:
  """A restored state with the hyperparameters of the current config, which a resume
  may have changed (e.g. a lower learning rate for fine-tuning)."""
  t = family.config.training
  return state.replace(
      hparams=train_hparams(t.seed, t.ema_decay, family.loss_hparams()),
      opt_state=optimizers.set_hyperparameters(state.opt_state, family.config.optim))


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

  Args:
    config: the whole config (ConfigDict, dict or typed); sections left out take
      their defaults.
    workdir: the run's folder; created if needed, resumed if it holds a run. One
      process at a time may train in it (an OS lock, released when the process ends).
    progress: show a progress bar (else one line per log step).
    devices: the data-parallel mesh (default: all devices of all processes).

  Raises:
    ConfigError: invalid config, missing data, unreadable/mismatched checkpoint.
    WorkdirError: the workdir is in use, a write failed (disk full), or Ctrl-C came
      before the first step (a workdir this call created is then removed).
    NonFiniteLossError: a NaN/Inf loss; the last good checkpoint is untouched.
  """
  mesh = sharding.make_mesh(devices)
  cfg = config_check.validate(config, num_devices=mesh.size)
  runs.check_workdir(workdir)
  family = families.make_family(cfg)
  source = make_source(cfg.data, split=cfg.data.split)  # missing data: before any write
  is_chief = jax.process_index() == 0
  created = not os.path.exists(workdir)
  os.makedirs(workdir, exist_ok=True)
  lock = runs.WorkdirLock(workdir).acquire() if is_chief else None
  run = _Run(cfg, family, source, workdir, mesh, is_chief)
  try:
    return run.train(progress)
  except KeyboardInterrupt:
    raise WorkdirError("interrupted (Ctrl-C) before the first step; nothing was saved.") \
        from None
  except NonFiniteLossError:
    raise
  except Exception as e:  # noqa: BLE001 - only write failures are turned into one line
    if isinstance(e, OSError) or runs.is_disk_full(e):
      raise runs.io_error(e, workdir, run.last_checkpoint) from None
    raise
  finally:
    if lock is not None:
      lock.release()
    if created and not run.started and os.path.isdir(workdir):
      shutil.rmtree(workdir, ignore_errors=True)   # our own, still empty of any result


class _Run:
  """One call of :func:`train`: the state of the loop, so a failure can say what is saved."""

  def __init__(self, cfg, family, source, workdir, mesh, is_chief):
    self.cfg, self.family, self.source, self.workdir = cfg, family, source, workdir
    self.mesh, self.is_chief = mesh, is_chief
    self.started = False                 # a train call has completed in this process
    self.last_checkpoint = None          # newest complete checkpoint on disk

  def train(self, progress: bool) -> dict:
    cfg, family, source, workdir, mesh, is_chief = (
        self.cfg, self.family, self.source, self.workdir, self.mesh, self.is_chief)
    t = cfg.training
    if is_chief:
      runs.write_config(cfg, workdir)
    optimizer = optimizers.make_optimizer(cfg.optim)
    state = initial_state(family, optimizer)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
    ckpt = Checkpointer(workdir, keep=t.keep_checkpoints)
    writer = None
    try:
      state, restored_step = ckpt.restore_latest(state)
      self.last_checkpoint = restored_step
      if restored_step is not None:
        state = with_config_hyperparams(state, family)
      state = sharding.replicate(state, mesh)
      step = int(sharding.to_host(state.step))
      dev = mesh.devices.flat[0]
      resumed = f"resumed from step {restored_step}" if restored_step is not None else "new run"
      print(f"model: {cfg.model.name}, {n_params:,} parameters | devices: {mesh.size} x "
            f"{dev.platform} ({dev.device_kind}), {jax.process_count()} process(es) | {resumed}",
            flush=True)

      k = t.steps_per_call
      step_fn = functools.partial(
          train_step, loss_fn=family.loss_fn, optimizer=optimizer,
          get_batch=source.batch_fn(t.batch_size),
          batch_sharding=NamedSharding(mesh, P(sharding.DATA_AXIS)))
      call = jax.jit(scan_steps(step_fn, k, data_per_step=not source.device_resident),
                     donate_argnums=(0,))
      data_stream = None
      if source.device_resident:
        data = sharding.replicate(source.arrays, mesh)
      else:
        # Each process reads its own 1/process_count of every global batch.
        data_stream = source.iterator(t.batch_size, t.seed, step, jax.process_index(),
                                      jax.process_count())
      if is_chief:
        writer = metric_writers.MetricWriter(workdir, resume_step=step)
      evals = evaluators.make_evaluators(family, workdir) if is_chief else []
      return self._loop(state, step, call, data, data_stream, ckpt, writer, evals, progress)
    finally:
      if writer is not None:
        writer.close()
      ckpt.close()

  def _loop(self, state, step, call, data, data_stream, ckpt, writer, evals, progress):
    family, workdir, t = self.family, self.workdir, self.cfg.training
    k = t.steps_per_call
    sample_fn = None
    bar = (tqdm(total=t.num_train_steps, initial=step, unit="step", dynamic_ncols=True,
                file=sys.stderr, mininterval=1.0) if progress and self.is_chief else None)
    metrics, last_log_time, last_log_step = {}, time.time(), step
    try:
      with _StopSignal() as stop:
        while step < t.num_train_steps:
          if data_stream is not None:
            data = sharding.shard_batch(np.stack([next(data_stream) for _ in range(k)]),
                                        self.mesh, axis=1)
          state, metrics = call(state, data)
          step += k
          self.started = True
          if bar is not None:
            bar.update(k)
          if itstime(step, t.log_every, t.num_train_steps):
            self._check_finite(state)
            now = time.time()
            scalars = {n: float(v) for n, v in metrics.items()}
            steps_per_s = (step - last_log_step) / max(now - last_log_time, 1e-9)
            scalars.update(steps_per_s=steps_per_s, img_per_s=steps_per_s * t.batch_size)
            last_log_time, last_log_step = now, step
            if writer is not None:
              writer.write_scalars(step, scalars)
            if bar is not None:
              bar.set_postfix(loss=f"{scalars['loss']:.4f}", img_s=f"{scalars['img_per_s']:.0f}")
            elif self.is_chief:
              print(f"step {step}: loss {scalars['loss']:.5f}, {steps_per_s:.2f} steps/s, "
                    f"{scalars['img_per_s']:.0f} img/s", flush=True)
          if itstime(step, t.checkpoint_every, t.num_train_steps) or stop.received:
            self._check_finite(state)
            ckpt.save(step, state)
            self.last_checkpoint = step
          if self.is_chief and itstime(step, t.sample_every, t.num_train_steps):
            sample_fn = sample_fn or family.sample_fn(t.num_samples)
            key = jax.random.fold_in(jax.random.PRNGKey(t.seed + 1), step)
            samples = np.asarray(sample_fn(state.ema_params, key))
            grid = runs.save_samples(os.path.join(workdir, "samples"), f"step_{step:08d}",
                                     samples, family.to_uint8(samples))
            if grid is not None and writer is not None:
              writer.write_images(step, "samples", grid)
          for ev in evals:
            if itstime(step, ev.every, t.num_train_steps):
              scalars = ev.run(state.ema_params, step)
              print(f"eval at step {step}: " + ", ".join(f"{n} {v:.4f}" for n, v in
                                                         scalars.items()), flush=True)
              if writer is not None:
                writer.write_scalars(step, scalars)
          if stop.received:
            print(f"\nreceived {stop.received}: saved checkpoint {step}, exiting", flush=True)
            break
    finally:
      if bar is not None:
        bar.close()
    final = {n: float(v) for n, v in metrics.items()}
    final["step"] = step
    if self.is_chief and metrics:
      print(f"done: step {step}, loss {final['loss']:.5f}, workdir {os.path.abspath(workdir)}",
            flush=True)
    return final

  def _check_finite(self, state) -> None:
    bad = int(sharding.to_host(state.first_nonfinite_step))
    if bad < 0:
      return
    kept = (f"the last good checkpoint (step {self.last_checkpoint}) is intact"
            if self.last_checkpoint is not None else
            "no checkpoint had been written yet, so the run starts afresh next time")
    raise NonFiniteLossError(
        f"loss became NaN/Inf at step {bad}; stopped without saving, {kept}. Lower "
        "optim.lr, enable optim.grad_clip or check the data.")

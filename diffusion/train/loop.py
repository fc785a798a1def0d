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

import dataclasses
import functools
import logging
import os
import shutil
import signal
import sys
import threading
import time
from typing import List, Optional, Sequence, Union

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from tqdm import tqdm

from diffusion import families
from diffusion.config import checks as config_check
from diffusion import evals as evaluators
from diffusion.io import metric_writers
from diffusion.train import optim as optimizers
from diffusion.io import workdir as runs
from diffusion.train import sharding
from diffusion.io.checkpoints import Checkpointer
from diffusion.config import program_key
from diffusion.data import make_source
from diffusion.errors import ConfigError, WorkdirError
from diffusion.train.step import (TrainState, create_train_state, scan_steps, train_hparams,
                                  train_step)

log = logging.getLogger(__name__)

# Parameters are initialised from fold_in(seed, INIT_SALT); steps use fold_in(seed, step >= 0).
INIT_SALT = 2**31 - 1


class NonFiniteLossError(RuntimeError):
  """A training step produced a NaN or Inf loss."""


class Interrupted(WorkdirError):
  """SIGINT/SIGTERM stopped the work; what was saved is intact and a rerun resumes."""


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


# Signals taken by a caller's handler (:func:`interrupt`, which a reproduction installs)
# before the loop began: the loop stops after its first call. A KeyboardInterrupt raised in
# a library callback (a gc hook) is swallowed; this list is not.
PENDING_STOP: List[str] = []


def _in_gc_callback(frame) -> bool:
  """Whether Python is inside a garbage-collector callback (jax registers one), where a
  raised KeyboardInterrupt is printed and swallowed instead of stopping the program."""
  while frame is not None:
    if frame.f_code.co_name == "_xla_gc_callback":
      return True
    frame = frame.f_back
  return False


def interrupt(signum, frame):
  """SIGINT/SIGTERM outside the loop: remember it, and stop what runs now. Inside a gc
  callback the signal is delivered again 50 ms later, where it can stop the program."""
  if _in_gc_callback(frame):
    threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
    return
  PENDING_STOP.append(signal.Signals(signum).name)
  raise KeyboardInterrupt


class _StopSignal:
  """Turns SIGTERM / SIGINT into a flag the loop checks between calls."""

  def __init__(self):
    self.received = PENDING_STOP[0] if PENDING_STOP else None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: leave signals alone
        pass
    return self

  def _handle(self, signum, frame):  # noqa: ARG002
    if self.received is not None:   # a second signal: stop now, without saving
      raise KeyboardInterrupt
    self.received = signal.Signals(signum).name
    print(f"\nreceived {self.received}: stopping after the current call, saving a checkpoint "
          "(send it again to stop at once, without saving)", file=sys.stderr, flush=True)

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
  result = train_population([config], [workdir], progress=progress, devices=devices)[0]
  if isinstance(result, Exception):
    raise result
  return result


POPULATION_STRATEGIES = ("auto", "vmap", "map")


def population_strategy(strategy: str) -> str:
  """``vmap`` or ``map`` for a population; ``auto`` is vmap.

  vmap batches the members' computations into one program (the speed of a population
  on accelerators); ``map`` runs the members one after another inside the same compiled
  step (``lax.map``), which needs the memory of one member's step only. On XLA:CPU
  neither helps a convolutional network: a vmapped convolution whose weights differ
  per member becomes a grouped convolution, and loop bodies run convolutions slowly,
  so a digits U-Net population costs 4.5x (vmap) or 15x (map) one run's step per
  member (measured: BENCHMARKS.md); there ``--sweep_mode=sequential`` is faster, and
  the loop says so.
  """
  if strategy not in POPULATION_STRATEGIES:
    raise ConfigError(f"--population_strategy={strategy!r} is not valid; choose one of "
                      f"{', '.join(repr(s) for s in POPULATION_STRATEGIES)}.")
  return "vmap" if strategy == "auto" else strategy


def train_population(configs: Sequence, workdirs: Sequence[str], *, names=None,
                     progress: bool = True, devices=None,
                     strategy: str = "auto") -> List[Union[dict, Exception]]:
  """Trains P runs that differ only in :data:`diffusion.config.POPULATION_FIELDS`.

  P = 1 is the single run (data parallel over ``devices``). For P > 1 the train step
  is ``jax.vmap``-ed over the stacked train states, one compiled program for all
  members, with the population axis sharded over the largest number of devices
  that divides P. Each member keeps its own workdir exactly as a single run writes
  it (lock, config.json, checkpoints, metrics.jsonl, tb/, samples/) and resumes the
  same way.

  ``strategy`` (:func:`population_strategy`): ``vmap``, or ``map`` (members one after
  another inside the same compiled step), or ``auto``.

  Returns:
    per member, its final metrics, or the exception that stopped it (a NaN/Inf
    loss in one member stops that member only).
  """
  if len(configs) != len(workdirs) or not configs:
    raise ValueError("train_population needs one workdir per config (at least one).")
  devices = jax.devices() if devices is None else list(devices)
  pop = len(configs)
  if pop == 1:
    mesh = sharding.make_mesh(devices)
  else:
    size = max(d for d in range(1, len(devices) + 1) if pop % d == 0)
    mesh = sharding.make_mesh(devices[:size], axis=sharding.POPULATION_AXIS)
  cfgs = [config_check.validate(c, num_devices=mesh.size if pop == 1 else 1)
          for c in configs]
  _check_one_program(cfgs, names or workdirs)
  for workdir in workdirs:
    runs.check_workdir(workdir)
  source = make_source(cfgs[0].data, split=cfgs[0].data.split)  # missing data: before writes
  is_chief = jax.process_index() == 0
  members = [_Member(cfg, w, name) for cfg, w, name in
             zip(cfgs, workdirs, names or [None] * pop)]
  locks = []
  try:
    for m in members:
      m.created = runs.make_workdir(m.workdir)
      if is_chief:
        try:
          locks.append(runs.WorkdirLock(m.workdir).acquire())
        except PermissionError as e:   # a read-only workdir
          raise runs.io_error(e, m.workdir, None) from None
    platform = mesh.devices.flat[0].platform
    if pop > 1 and platform == "cpu" and cfgs[0].model.name == "unet":
      logging.warning("a population of U-Nets on CPU runs slower per member than one run "
                      "(XLA:CPU grouped convolutions); --sweep_mode=sequential is faster.")
    run = _Run(members, source, mesh, is_chief, population_strategy(strategy))
    try:
      return run.train(progress)
    except KeyboardInterrupt:
      saved = members[0].last_checkpoint
      raise Interrupted(
          "interrupted (Ctrl-C) before the first step; nothing was saved." if saved is None
          else f"interrupted (Ctrl-C); checkpoint {saved} is intact; run the same command "
          "again to resume.") from None
    except Exception as e:  # noqa: BLE001 - only write failures are turned into one line
      if isinstance(e, OSError) or runs.is_disk_full(e):
        raise runs.io_error(e, members[0].workdir if pop == 1 else os.path.dirname(
            members[0].workdir), members[0].last_checkpoint) from None
      raise
  finally:
    for lock in locks:
      lock.release()
    for m in members:
      if m.created and not m.started and os.path.isdir(m.workdir):
        shutil.rmtree(m.workdir, ignore_errors=True)   # our own, still without any result


def _check_one_program(cfgs, names) -> None:
  """ValueError naming the first field (not a population field) in which members differ."""
  keys = [program_key(c) for c in cfgs]
  for name, key in zip(names[1:], keys[1:]):
    differ = [k for k in keys[0] if keys[0][k] != key.get(k)]
    if differ:
      raise ValueError(f"{name} differs from {names[0]} in {', '.join(differ[:3])}, which "
                       "change the compiled program; such points train in separate groups.")


class _Member:
  """One run of a population: its config, family, workdir and what it has saved."""

  def __init__(self, cfg, workdir: str, name: Optional[str]):
    self.cfg, self.workdir, self.name = cfg, workdir, name
    self.family = families.make_family(cfg)
    self.created = False
    self.started = False                 # a train call has completed in this process
    self.last_checkpoint = None          # newest complete checkpoint on disk
    self.failure: Optional[Exception] = None
    self.ckpt = self.writer = None
    self.evals = []

  def prefix(self) -> str:
    return f"[{self.name}] " if self.name else ""


def _population_step(step_fn, strategy: str, shared_data: bool):
  """``step_fn`` over stacked member states: ``jax.vmap``, or ``lax.map`` (one member at
  a time within the program); ``shared_data``: every member draws from the same data."""
  if strategy == "vmap":
    return jax.vmap(step_fn, in_axes=(0, None if shared_data else 0))
  if shared_data:
    return lambda states, data: jax.lax.map(lambda s: step_fn(s, data), states)
  return lambda states, data: jax.lax.map(lambda sd: step_fn(*sd), (states, data))


def _local(tree):
  """``tree`` usable by this process alone (sampling, evaluation on the chief): the
  arrays themselves in a one-process run, host copies when several processes share them."""
  return tree if jax.process_count() == 1 else sharding.to_host(tree)


def _stack(trees):
  return jax.tree.map(lambda *leaves: np.stack(leaves), *trees)


def _member(tree, i: int, pop: int):
  """Member ``i``'s slice of a stacked tree (the tree itself for a single run)."""
  return tree if pop == 1 else jax.tree.map(lambda a: a[i], tree)


class _Run:
  """One call of :func:`train_population`: the loop's state, so failures can say what is
  saved and each member's files are written as a single run writes them."""

  def __init__(self, members: List[_Member], source, mesh, is_chief: bool,
               strategy: str = "vmap"):
    self.members, self.source, self.mesh, self.is_chief = members, source, mesh, is_chief
    self.pop = len(members)
    self.strategy = strategy
    self.interrupted = None   # the signal's name when SIGINT/SIGTERM stopped the loop

  def train(self, progress: bool) -> List[Union[dict, Exception]]:
    members, pop, mesh = self.members, self.pop, self.mesh
    lead = members[0]
    t = lead.cfg.training
    optimizers_ = [optimizers.make_optimizer(m.cfg.optim) for m in members]
    try:
      states = []
      for m, opt in zip(members, optimizers_):
        m.ckpt = Checkpointer(m.workdir, keep=t.keep_checkpoints)
        states.append(initial_state(m.family, opt))
      n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(states[0].params))
      states, restored = self._restore(states)
      # Only a config the checkpoints accepted is written: a refused resume changes nothing.
      for m in members:
        if self.is_chief:
          runs.write_config(m.cfg, m.workdir)
      step = int(sharding.to_host(states[0].step))
      if lead.cfg.model.name == "analytic":
        return self._analytic(states, restored)
      if pop == 1:
        state = sharding.replicate(states[0], mesh)
      else:
        state = sharding.shard_leading(_stack(sharding.to_host(states)), mesh)
      dev = mesh.devices.flat[0]
      resumed = f"resumed from step {restored}" if restored is not None else "new run"
      what = "" if pop == 1 else f"population of {pop} ({self.strategy}) | "
      print(f"model: {lead.cfg.model.name}, {n_params:,} parameters | {what}devices: "
            f"{mesh.size} x {dev.platform} ({dev.device_kind}), {jax.process_count()} "
            f"process(es) | {resumed}", flush=True)

      k = t.steps_per_call
      step_fn = functools.partial(
          train_step, loss_fn=lead.family.loss_fn, optimizer=optimizers_[0],
          get_batch=self.source.batch_fn(t.batch_size),
          batch_sharding=NamedSharding(mesh, P(sharding.DATA_AXIS)) if pop == 1 else None)
      if pop > 1:  # one program for all members: their differences are state arrays
        step_fn = _population_step(step_fn, self.strategy, self.source.device_resident)
      call = jax.jit(scan_steps(step_fn, k, data_per_step=not self.source.device_resident),
                     donate_argnums=(0,))
      streams = None
      if self.source.device_resident:
        data = sharding.replicate(self.source.arrays, mesh)
      else:
        # Each process reads its own 1/process_count of every global batch; each member
        # its own order (its seed).
        data = None
        streams = [self.source.iterator(t.batch_size, m.cfg.training.seed, step,
                                        jax.process_index(), jax.process_count())
                   for m in members]
      if self.is_chief:
        for m in members:
          m.writer = metric_writers.MetricWriter(m.workdir, resume_step=step,
                                                 writers=m.cfg.training.writers)
          m.evals = evaluators.make_evaluators(m.family, m.workdir)
      return self._loop(state, step, call, data, streams, progress)
    finally:
      for m in members:
        if m.writer is not None:
          m.writer.close()
        if m.ckpt is not None:
          m.ckpt.close()

  def _analytic(self, states, restored) -> List[dict]:
    """The exact mixture model has nothing to train: the run is its config and a step-0
    checkpoint with empty parameters, which sample.py and diffusion.load read."""
    for m, state in zip(self.members, states):
      if restored is None:
        m.ckpt.save(0, state)
        m.last_checkpoint = 0
      m.started = True
      if self.is_chief:
        print(f"{m.prefix()}model: analytic (the exact eps of the data mixture), nothing to "
              f"train: wrote config.json and checkpoint 0 in {os.path.abspath(m.workdir)}; "
              "sample with sample.py --workdir or diffusion.load.", flush=True)
    return [{"step": 0} for _ in self.members]

  def _restore(self, states):
    """Each member's newest readable checkpoint. A population resumes at one step: the
    oldest of its members' (from scratch if one has none); training is deterministic,
    so the members ahead redo their steps bit-identically."""
    restored = [m.ckpt.restore_latest(state) for m, state in zip(self.members, states)]
    steps = [step for _, step in restored]
    if len(set(steps)) > 1:
      common = None if None in steps else min(steps)
      restored = [(state, None) if common is None else (m.ckpt.restore(common, state), common)
                  for m, state in zip(self.members, states)]
    out = []
    for m, (state, step) in zip(self.members, restored):
      m.last_checkpoint = step
      out.append(with_config_hyperparams(state, m.family) if step is not None else state)
    return out, restored[0][1]

  def _loop(self, state, step, call, data, streams, progress):
    members, pop, t = self.members, self.pop, self.members[0].cfg.training
    k = t.steps_per_call
    sample_fn = None
    # Evaluator cadences from the config: the same in every process (only the chief runs them).
    lead_eval = members[0].cfg.eval
    eval_every = [getattr(lead_eval, f.name).every for f in dataclasses.fields(lead_eval)]
    bar = (tqdm(total=t.num_train_steps, initial=step, unit="step", dynamic_ncols=True,
                file=sys.stderr, mininterval=1.0) if progress and self.is_chief else None)
    metrics, last_log_time, last_log_step = {}, time.time(), step
    try:
      with _StopSignal() as stop:
        while step < t.num_train_steps:
          if streams is not None:
            batches = [np.stack([next(s) for s in streams]) if pop > 1 else next(streams[0])
                       for _ in range(k)]
            data = sharding.shard_batch(np.stack(batches), self.mesh, axis=1)
          state, metrics = call(state, data)
          step += k
          for m in members:
            m.started = True
          if bar is not None:
            bar.update(k)
          if itstime(step, t.log_every, t.num_train_steps):
            self._check_finite(state)
            active = [i for i, m in enumerate(members) if m.failure is None]
            now = time.time()
            steps_per_s = (step - last_log_step) / max(now - last_log_time, 1e-9)
            last_log_time, last_log_step = now, step
            host = sharding.to_host(metrics)
            for i in active:
              m = members[i]
              scalars = {n: float(np.asarray(_member(v, i, pop))) for n, v in host.items()}
              scalars.update(steps_per_s=steps_per_s, img_per_s=steps_per_s * t.batch_size)
              if m.writer is not None:
                m.writer.write_scalars(step, scalars)
              if bar is None and self.is_chief:
                print(f"{m.prefix()}step {step}: loss {scalars['loss']:.5f}, "
                      f"{steps_per_s:.2f} steps/s, {scalars['img_per_s']:.0f} img/s", flush=True)
            if bar is not None and active:
              bar.set_postfix(loss=f"{float(np.mean(np.asarray(host['loss']))):.4f}")
          if itstime(step, t.checkpoint_every, t.num_train_steps) or stop.received:
            self._save(state, step)
          # Stopping: save, then leave (no samples or evaluations of an unfinished model).
          sampling = itstime(step, t.sample_every, t.num_train_steps) and not stop.received
          evaluating = (any(itstime(step, every, t.num_train_steps) for every in eval_every)
                        and not stop.received)
          ema = None
          if sampling or evaluating:  # every process takes part in gathering the EMA params
            ema = _local(state.ema_params)
          if self.is_chief and sampling:
            sample_fn = sample_fn or members[0].family.sample_fn(t.num_samples)
            for i, m in enumerate(members):
              if m.failure is None:
                self._write_samples(m, sample_fn, _member(ema, i, pop), step)
          for i, m in enumerate(members):
            for ev in m.evals:
              if (m.failure is None and evaluating and not stop.received
                  and itstime(step, ev.every, t.num_train_steps)):
                scalars = ev.run(_member(ema, i, pop), step)
                print(f"{m.prefix()}eval at step {step}: " + ", ".join(
                    f"{n} {v:.4f}" for n, v in scalars.items()), flush=True)
                if m.writer is not None:
                  m.writer.write_scalars(step, scalars)
          if stop.received:   # it may have come during the samples or evaluations
            self._save(state, step)
            print(f"\nreceived {stop.received}: saved checkpoint {step}, exiting", flush=True)
            break
          if not any(m.failure is None for m in members):
            break
        # A signal after the last call still stops what comes next (a reproduction's
        # evaluation): the model is saved, the caller is told.
        self.interrupted = stop.received
    finally:
      if bar is not None:
        bar.close()
    host = sharding.to_host(metrics)
    results = []
    for i, m in enumerate(members):
      if m.failure is not None:
        results.append(m.failure)
        continue
      final = {n: float(np.asarray(_member(v, i, pop))) for n, v in host.items()}
      final["step"] = step
      if self.interrupted:
        final["interrupted"] = self.interrupted   # a signal stopped it (a checkpoint is saved)
      if self.is_chief and host:
        print(f"{m.prefix()}done: step {step}, loss {final['loss']:.5f}, workdir "
              f"{os.path.abspath(m.workdir)}", flush=True)
      results.append(final)
    return results

  def _save(self, state, step: int) -> None:
    """Checkpoint ``step`` of every member still training (once per step)."""
    self._check_finite(state)
    for i, m in enumerate(self.members):
      if m.failure is None and m.last_checkpoint != step:
        m.ckpt.save(step, _member(state, i, self.pop))
        m.last_checkpoint = step

  def _write_samples(self, m: _Member, sample_fn, ema_params, step: int) -> None:
    key = jax.random.fold_in(jax.random.PRNGKey(m.cfg.training.seed + 1), step)
    samples = np.asarray(sample_fn(ema_params, key))
    grid = runs.save_samples(os.path.join(m.workdir, "samples"), f"step_{step:08d}", samples,
                             m.family.to_uint8(samples))
    if grid is not None and m.writer is not None:
      m.writer.write_images(step, "samples", grid)

  def _check_finite(self, state) -> None:
    """Marks members whose loss became NaN/Inf; a single run raises at once."""
    bad = np.atleast_1d(sharding.to_host(state.first_nonfinite_step))
    for m, first_bad in zip(self.members, bad):
      if first_bad < 0 or m.failure is not None:
        continue
      kept = (f"the last good checkpoint (step {m.last_checkpoint}) is intact"
              if m.last_checkpoint is not None else
              "no checkpoint had been written yet, so the run starts afresh next time")
      m.failure = NonFiniteLossError(
          f"loss became NaN/Inf at step {int(first_bad)}; stopped without saving, {kept}. "
          "Lower optim.lr, enable optim.grad_clip or check the data.")
      if self.pop == 1:
        raise m.failure
      print(f"{m.prefix()}error: {m.failure}", flush=True)

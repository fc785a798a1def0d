"""The training loop of one run: config + workdir in, checkpoints, metrics and samples out.

``train(config, workdir)`` is what ``train.py`` runs; it is importable, so notebooks
and sweeps call it directly. Same workdir means resume: the latest readable
checkpoint is restored automatically, with step, EMA and logs intact.

It reads top to bottom: :func:`train` (one run: validate its config, lay it out on the
devices), :func:`train_layout` (claim the members' workdirs, open the data), then
:func:`_run_loop` (the loop itself):

  validate config -> family (process, network, loss) -> data source -> workdir locked
  -> optimizer -> restore or create TrainState -> jit(scan_steps(train_step)) -> per call
  (``training.steps_per_call`` steps):
     state, metrics = call(state, data)   # data: device arrays, or K host batches
     log / checkpoint / sample grid / evaluators, each when ``itstime``
     on_log(step, scalars) -> stop?       # a search's hook, after a step's logs and evals

Where the run's arrays live is a :class:`diffusion.train.layout.Layout`: one member, its
state replicated over a data-parallel mesh. :mod:`diffusion.train.population` trains P runs
as one program by running this same loop over another layout; nothing here is specific to
populations or to a model family (a family without parameters, ``family.trainable`` False,
is saved at step 0 and not trained).
"""

import contextlib
import dataclasses
import functools
import logging
import os
import shutil
import signal
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import jax
import numpy as np
from jax.experimental import multihost_utils

from diffusion import evals, xla_cpu
from diffusion.config import checks
from diffusion.core import prior
from diffusion.config import grid_sampling
from diffusion.data import make_source
from diffusion.errors import WorkdirError, signal_again
from diffusion.io import metric_writers, phema_snapshots
from diffusion.io.bars import ProgressBar
from diffusion.io.checkpoints import Checkpointer
from diffusion.io.workdir import (WorkdirLock, check_workdir, io_error, is_disk_full,
                                  make_workdir, save_samples, write_config)
from diffusion.train import optim, posthoc_ema
from diffusion.train import sharding
from diffusion.train import stopping
from diffusion.train.layout import Layout, Member
from diffusion.train.progress import CallWaiter, StepBar
from diffusion.train.step import (TrainState, create_train_state, scan_steps, train_hparams,
                                  train_step)

log = logging.getLogger(__name__)

# Parameters are initialised from fold_in(seed, INIT_SALT); steps use fold_in(seed, step >= 0).
INIT_SALT = 2**31 - 1


class NonFiniteLossError(RuntimeError):
  """A training step produced a NaN or Inf loss."""


class Interrupted(WorkdirError):
  """SIGINT/SIGTERM stopped the work; what was saved is intact and a rerun resumes.
  ``abandoned``: a compiled call may still be running (a command exits without waiting
  for it, :func:`diffusion.cli.run_main`)."""
  abandoned = False


def itstime(step: int, every: int, total: int) -> bool:
  """True at multiples of ``every`` and at the last step (never when ``every`` is 0)."""
  return every > 0 and (step % every == 0 or step == total)


def initial_state(family, optimizer) -> TrainState:
  """The step-0 train state of a run (parameters from fold_in(seed, INIT_SALT))."""
  t = family.config.training
  key = jax.random.fold_in(jax.random.PRNGKey(t.seed), INIT_SALT)
  return create_train_state(family.init_params(key), optimizer, seed=t.seed,
                            ema_decay=t.ema_decay, loss_hparams=family.loss_hparams(),
                            phema_profiles=len(t.phema_std_rel))


def with_config_hyperparams(state: TrainState, family) -> TrainState:
  """A restored state with the hyperparameters of the current config, which a resume
  may have changed (e.g. a lower learning rate for fine-tuning)."""
  t = family.config.training
  return state.replace(
      hparams=train_hparams(t.seed, t.ema_decay, family.loss_hparams()),
      opt_state=optim.set_hyperparameters(state.opt_state, family.config.optim))


# Signals taken by a caller's handler (:func:`interrupt`, which train.py and a reproduction
# install) before the loop began: the loop stops after its first call. A KeyboardInterrupt
# raised in a library callback (a weakref callback, a __del__) is swallowed; this list is
# not.
PENDING_STOP: List[str] = []


def interrupt(signum, frame):
  """SIGINT/SIGTERM outside the loop: remember it, and stop what runs now. Inside a gc
  callback the signal is delivered again 50 ms later, where it can stop the program."""
  if stopping.in_gc_callback(frame):
    signal_again(signum)
    return
  PENDING_STOP.append(signal.Signals(signum).name)
  raise KeyboardInterrupt


def drop_swallowed_interrupts(unraisable) -> None:
  """``sys.unraisablehook`` of the commands whose signals go to :func:`interrupt` (and to
  the loop's own handler): Python cannot raise an exception from inside a weakref callback
  or a ``__del__``, and prints it as "Exception ignored in ..." (a traceback under the
  command's lines, CI saw one). A KeyboardInterrupt there is not printed. The signal was
  recorded (:data:`PENDING_STOP`, or the loop's ``StopSignal.received``), and the loop
  saves and stops at its next check; only the loop's "stop now" (a second signal, or one
  that ends a sample grid or an evaluation) is sent again 50 ms later, as it is from a gc
  callback (sending a recorded first signal again would count as a second: stop without
  saving). Anything else is printed as Python does."""
  e = unraisable.exc_value
  if isinstance(e, (stopping.StopNow, stopping.DutyStopped)):
    signal_again(signal.Signals[e.args[0]])
  elif not issubclass(unraisable.exc_type, KeyboardInterrupt):
    sys.__unraisablehook__(unraisable)


# on_log(step, scalars) -> stop: train's hook; train_layout's takes the member first.
OnLog = Callable[[int, Dict[str, float]], bool]
MemberOnLog = Callable[[int, int, Dict[str, float]], bool]


def train(config, workdir: str, *, progress: bool = True, devices=None,
          on_log: Optional[OnLog] = None) -> dict:
  """Trains (or resumes) the run in ``workdir``; returns the final metrics.

  Args:
    config: the whole config (ConfigDict, dict or typed); sections left out take
      their defaults.
    workdir: the run's folder; created if needed, resumed if it holds a run. One
      process at a time may train in it (an OS lock, released when the process ends).
    progress: show progress bars (training, and each sample grid's chain); else one
      line per log step.
    devices: the data-parallel mesh (default: all devices of all processes).
    on_log: ``on_log(step, scalars) -> stop``, called (by the chief) at every step where
      the loop logged or ran an evaluator, after that step's evaluators, with that step's
      training scalars and ``eval/*`` results merged. True stops the run there: a
      checkpoint of that step is saved and the result is ``{"step": step, "stopped":
      True, ...}`` (neither a failure nor an interruption). Not called at a step where a
      signal stopped the run (it reports again from the step it resumes at). With several
      processes the chief's answer is broadcast (give every process an ``on_log``).

  Raises:
    ConfigError: invalid config, missing data, unreadable/mismatched checkpoint.
    WorkdirError: the workdir is in use, a write failed (disk full), or Ctrl-C came
      before the first step (a workdir this call created is then removed).
    NonFiniteLossError: a NaN/Inf loss; the last good checkpoint is untouched.
  """
  mesh = sharding.make_mesh(jax.devices() if devices is None else list(devices))
  cfg = checks.validate(config, num_devices=mesh.size)
  hook = None if on_log is None else lambda i, step, scalars: on_log(step, scalars)
  return train_layout(Layout([Member(cfg, workdir)], mesh), progress=progress,
                      on_log=hook)[0]


def train_layout(layout: Layout, progress: bool = True,
                 on_log: Optional[MemberOnLog] = None) -> List[Union[dict, Exception]]:
  """Trains (or resumes) the members of ``layout`` (:func:`train`: one member; a
  population: P): checks their workdirs and opens the data before anything is written,
  then runs the loop in the workdirs it created and locked.

  ``on_log(member, step, scalars) -> stop`` is :func:`train`'s hook per member: True
  stops that member only (saved at that step, then no more logs, saves or evaluations,
  as a failed member); the loop ends when no member is left training.

  Returns:
    per member, its final metrics, or the exception that stopped it (a layout may let
    the others go on; one run's NaN/Inf loss is raised).
  """
  for m in layout.members:
    check_workdir(m.workdir)
    evals.check_applies(m.cfg)   # each declared evaluator's own rules, before any write
  data = layout.members[0].cfg.data
  source = make_source(data, split=data.split)  # missing data fails here, before any write
  with _claimed(layout):
    return _run_loop(layout, source, progress, on_log)


def _run_loop(layout: Layout, source, progress: bool,
              on_log: Optional[MemberOnLog] = None) -> List[Union[dict, Exception]]:
  """The loop of :func:`train_layout`, in the workdirs it claimed: optimizer, restore or
  init, compile, then calls of K steps with their duties until the last step or a
  signal; returns :func:`_results`."""
  members, chief = layout.members, _is_chief()
  lead = members[0]
  t = lead.cfg.training
  total, k = t.num_train_steps, t.steps_per_call
  with contextlib.ExitStack() as opened:
    opened.callback(_close_files, members)

    # Optimizer, then restore or init: each member's newest readable checkpoint, or step 0.
    optimizers = [optim.make_optimizer(m.cfg.optim) for m in members]
    for m in members:
      m.ckpt = Checkpointer(m.workdir, keep=t.keep_checkpoints)
    states = [initial_state(m.family, opt) for m, opt in zip(members, optimizers)]
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(states[0].params))
    for m in members:   # post-hoc EMA profiles cannot change midway (one line, before restore)
      if m.ckpt.steps():
        posthoc_ema.check_resume(m.workdir, m.cfg.training.phema_std_rel)
    states, resumed = _restore(layout, states)
    if chief and t.phema_std_rel:   # snapshots of steps trained again are set aside
      for m in members:
        phema_snapshots.set_aside_after(m.workdir, resumed or 0)
    if chief:  # only a config the checkpoints accepted: a refused resume changes nothing
      for m in members:
        write_config(m.cfg, m.workdir)
    if not lead.family.trainable:
      return _save_untrained(layout, states, resumed)
    step = int(sharding.to_host(states[0].step))
    state = layout.place(states)
    _print_start(layout, n_params, resumed)
    slow = xla_cpu.steps_per_call_warning(lead.cfg, layout.mesh.devices.flat[0].platform)
    if slow and chief:
      print(slow, file=sys.stderr, flush=True)
    if chief:
      _warn_if_prior_not_reached(lead.family, source)

    # The compiled call: K steps scanned, the state donated.
    step_fn = layout.step_fn(
        functools.partial(train_step, loss_fn=lead.family.loss_fn, optimizer=optimizers[0],
                          get_batch=source.batch_fn(t.batch_size),
                          phema_gammas=posthoc_ema.gammas(t.phema_std_rel)),
        shared_data=source.device_resident)
    call = jax.jit(scan_steps(step_fn, k, data_per_step=not source.device_resident),
                   donate_argnums=(0,))
    next_data = _data_feed(layout, source, step)

    if chief:
      for m in members:
        m.writer = metric_writers.MetricWriter(m.workdir, resume_step=step,
                                               writers=m.cfg.training.writers)
        m.evals = evals.make_evaluators(m.family, m.workdir)
        for ev in m.evals:
          ev.progress = progress   # their bars beside the training bar
    # Evaluator cadences from the config: the same in every process (only the chief runs them).
    eval_every = [getattr(lead.cfg.eval, f.name).every for f in dataclasses.fields(lead.cfg.eval)]
    chain_bar = ProgressBar("sampling") if progress and chief else None
    sample_fn = (lead.family.sample_fn(t.num_samples, grid_sampling(lead.cfg),
                                       on_progress=chain_bar)
                 if chief and t.sample_every > 0 else None)
    bar = StepBar(total, step) if progress and chief else None
    if bar is not None:
      opened.callback(bar.close)
    waiter = CallWaiter()
    opened.callback(waiter.close)

    # Each call is waited for before the next is made (progress.py): the bar counts
    # finished steps, and a signal saves when the running call ends.
    metrics, since, data, losses = {}, (time.time(), step), next_data(), []
    with stopping.StopSignal(PENDING_STOP) as stop:
      stop.remaining = waiter.remaining
      while step < total:
        first = not members[0].started
        stop.phase, stop.step = (stopping.COMPILING if first else stopping.WAITING), step + k
        waiter.dispatched = time.time()
        state, metrics = call(state, data)
        stop.phase = stopping.WAITING
        if step + k < total:
          data = next_data()   # the next call's host batches, read while this one runs
        waiter.wait(metrics)
        stop.phase = stopping.OTHER
        step += k
        losses.append(sharding.to_host(metrics["loss"]))   # for the interval's mean loss
        for m in members:
          m.started, m.done_step = True, step
        if bar is not None:
          bar.done(step)
        if first and not itstime(step, t.log_every, total):
          since = (time.time(), step)   # rates from here on leave the compilation out
        if itstime(step, t.log_every, total):
          since = _log(layout, state, metrics, step, since, bar, losses)
          losses = []
        # A snapshot before the checkpoint of its step: a resume from that checkpoint
        # never trains its step again, so the snapshot must exist already.
        if t.phema_std_rel and itstime(step, t.phema_snapshot_every, total):
          _save_phema(layout, state, step)
        if itstime(step, t.checkpoint_every, total) or stop.received:
          _save(layout, state, step, stop)
        # Stopping: save, then leave (no samples or evaluations of an unfinished model).
        sampling = itstime(step, t.sample_every, total) and not stop.received
        evaluating = (any(itstime(step, every, total) for every in eval_every)
                      and not stop.received)
        if sampling or evaluating:
          try:
            stop.phase = stopping.DUTY   # a signal stops these at once: the step is done
            # Every process takes part in gathering the EMA parameters; the chief uses them.
            ema = _local(state.ema_params)
            if sampling and chief:
              _sample_grids(layout, sample_fn, ema, step, chain_bar)
            if evaluating:
              _evaluate(layout, ema, step, stop)
          except stopping.DutyStopped:
            print(f"\nreceived {stop.received}: stopped the "
                  f"{'sample grid' if sampling else 'evaluation'} of step {step}",
                  file=sys.stderr, flush=True)
          finally:
            stop.phase = stopping.OTHER
        if stop.received:   # it may have come during the samples or evaluations
          _save(layout, state, step, stop)
          print(f"\nreceived {stop.received}: saved checkpoint {step}, exiting", flush=True)
          break
        # After this step's checkpoint: a checkpoint always holds the state before _report
        # changed it (a population-based training's exploit).
        if itstime(step, t.log_every, total) or evaluating:
          state = _report(layout, state, step, on_log)
        if not any(m.training for m in members):
          break
      # A signal after the last call still stops what comes next (a reproduction's
      # evaluation): the model is saved, the caller is told.
      interrupted = stop.received
    if bar is not None:
      bar.close()   # before the last lines
    return _results(layout, metrics, step, interrupted)


# ---------------------------------------------------------------------------
# The loop's duties (log, checkpoint, sample grid, evaluators) and its start and end
# ---------------------------------------------------------------------------


def _restore(layout: Layout, states):
  """(states with the current config's hyperparameters where restored, the step resumed
  from or None); each member's ``last_checkpoint`` is its restored step."""
  restored = layout.restore(states)
  out = []
  for m, (state, step) in zip(layout.members, restored):
    m.last_checkpoint = step
    fresh = step is not None and not layout.keeps_checkpoint_hyperparameters
    out.append(with_config_hyperparams(state, m.family) if fresh else state)
  return out, restored[0][1]


def _save_untrained(layout: Layout, states, resumed) -> List[dict]:
  """A model without parameters (the exact mixture ε) has nothing to train: the run is
  its config and a step-0 checkpoint with empty parameters, which sample.py and
  diffusion.load read."""
  for i, (m, state) in enumerate(zip(layout.members, states)):
    if resumed is None:
      m.ckpt.save(0, state)
      m.last_checkpoint = 0
    m.started = True
    if _is_chief():
      print(f"{layout.prefix(i)}model: {m.cfg.model.name} (no parameters), nothing to train: "
            f"wrote config.json and checkpoint 0 in {os.path.abspath(m.workdir)}; sample with "
            "sample.py --workdir or diffusion.load.", flush=True)
  return [{"step": 0} for _ in layout.members]


def _print_start(layout: Layout, n_params: int, resumed: Optional[int]) -> None:
  """The start-up line: model, layout, devices, new run or resumed."""
  dev = layout.mesh.devices.flat[0]
  what = "new run" if resumed is None else f"resumed from step {resumed}"
  print(f"model: {layout.members[0].cfg.model.name}, {n_params:,} parameters | "
        f"{layout.describe()}devices: {layout.mesh.size} x {dev.platform} ({dev.device_kind}), "
        f"{jax.process_count()} process(es) | {what}", flush=True)


def _warn_if_prior_not_reached(family, source) -> None:
  """One line on stderr when the run's forward process ends short of the prior its
  sampler starts from (:func:`diffusion.core.prior.prior_warning`); the VE test measures
  the data's spread on 1,000 examples of an in-memory set."""
  process = getattr(family, "process", None)
  if process is None:
    return
  spread = None
  if process.kind == "ve" and source.device_resident:
    spread = prior.data_spread(np.asarray(source.batch_fn(1000)(
        source.arrays, jax.random.PRNGKey(0))))
  line = prior.prior_warning(process, spread)
  if line:
    print(line, file=sys.stderr, flush=True)


def _data_feed(layout: Layout, source, step: int) -> Callable[[], Any]:
  """``next_data()`` of every call: the device-resident arrays (the step draws its batches
  from them), or K host batches from each member's stream (its seed's order, from
  ``step``; each process reads its own 1/process_count of every global batch)."""
  if source.device_resident:
    arrays = sharding.replicate(source.arrays, layout.mesh)
    return lambda: arrays
  t = layout.members[0].cfg.training
  streams = [source.iterator(t.batch_size, m.cfg.training.seed, step, jax.process_index(),
                             jax.process_count()) for m in layout.members]
  return lambda: sharding.shard_batch(
      np.stack([layout.next_batch(streams) for _ in range(t.steps_per_call)]), layout.mesh,
      axis=1)


def _scalars(layout: Layout, host_metrics, i: int) -> Dict[str, float]:
  return {n: float(np.asarray(layout.member(v, i))) for n, v in host_metrics.items()}


def _log(layout: Layout, state, metrics, step: int, since, bar,
         losses: Sequence[Any]) -> Tuple[float, int]:
  """The log duty: the NaN check, then each training member's scalars to its writers (a
  line each when there is no bar); returns (time, step) to measure the next rate from.
  ``loss`` is the last step's (one batch); ``loss_mean`` the mean of ``losses``, every
  call's last-step loss since the previous row (with ``steps_per_call`` 1: every step's),
  which seed noise disturbs far less."""
  _check_finite(layout, state)
  now = time.time()
  steps_per_s = (step - since[1]) / max(now - since[0], 1e-9)
  host = sharding.to_host(metrics)
  batch_size = layout.members[0].cfg.training.batch_size
  active = [i for i, m in enumerate(layout.members) if m.training]
  for i in active:
    m = layout.members[i]
    scalars = _scalars(layout, host, i)
    scalars.update(steps_per_s=steps_per_s, img_per_s=steps_per_s * batch_size)
    if losses:
      scalars["loss_mean"] = float(np.mean([np.asarray(layout.member(l, i)) for l in losses]))
    m.reported.update(scalars)
    if m.writer is not None:
      m.writer.write_scalars(step, scalars)
    if bar is None and _is_chief():
      print(f"{layout.prefix(i)}step {step}: loss {scalars['loss']:.5f}, "
            f"{steps_per_s:.2f} steps/s, {scalars['img_per_s']:.0f} img/s", flush=True)
  if bar is not None and active:
    bar.set_loss(float(np.mean(np.asarray(host['loss']))))
  return now, step


def _save(layout: Layout, state, step: int, stop: stopping.StopSignal) -> None:
  """The checkpoint duty: ``step`` of every member still training (once per step). A
  signal meanwhile waits for the save (a checkpoint cut short would be lost)."""
  _check_finite(layout, state)
  previous, stop.phase, stop.saving_step = stop.phase, stopping.SAVING, step
  try:
    for i, m in enumerate(layout.members):
      if m.training and m.last_checkpoint != step:
        start = time.time()
        m.ckpt.save(step, layout.member(state, i))
        m.last_checkpoint = step
        stop.save_seconds = time.time() - start
  finally:
    stop.phase = previous


def _save_phema(layout: Layout, state, step: int) -> None:
  """The post-hoc EMA duty: the profiles of every member still training as the snapshot
  of ``step`` (written by the chief; every process takes part in gathering them), then
  ``training.phema_keep``'s pruning."""
  _check_finite(layout, state)
  profiles = _local(state.phema_params)
  if not _is_chief():
    return
  for i, m in enumerate(layout.members):
    if m.training:
      t = m.cfg.training
      phema_snapshots.write(m.workdir, step, t.phema_std_rel, layout.member(profiles, i))
      phema_snapshots.prune(m.workdir, t.phema_keep)


def _sample_grids(layout: Layout, sample_fn, ema, step: int, chain_bar) -> None:
  """The sample-grid duty (the chief): each training member's grid from its EMA."""
  for i, m in enumerate(layout.members):
    if m.training:
      m.grid = _write_grid(m, layout.prefix(i), sample_fn, layout.member(ema, i), step,
                           chain_bar)


def _write_grid(m: Member, prefix: str, sample_fn, ema_params, step: int, chain_bar) -> str:
  """Member ``m``'s samples at ``step``: a line saying how they are drawn (a chain of
  1,000 steps takes minutes), the chain's bar, samples/step_<step>.npy and, for images,
  .png, and a line saying where and how long; returns the grid's absolute path (the .npy
  for points)."""
  t = m.cfg.training
  print(f"{prefix}sampling {t.num_samples} with "
        f"{m.family.describe_sampling(grid_sampling(m.cfg))} "
        f"(sample_every={t.sample_every}; 0 turns grids off)", flush=True)
  start = time.time()
  key = jax.random.fold_in(jax.random.PRNGKey(t.seed + 1), step)
  try:
    samples = np.asarray(sample_fn(ema_params, key))
  finally:
    if chain_bar is not None:
      chain_bar.close()
  name = f"step_{step:08d}"
  grid = save_samples(os.path.join(m.workdir, "samples"), name, samples,
                           m.family.to_uint8(samples))
  if grid is not None and m.writer is not None:
    m.writer.write_images(step, "samples", grid)
  path = os.path.join("samples", name + (".png" if grid is not None else ".npy"))
  print(f"{prefix}wrote {path} ({len(samples)} samples, {time.time() - start:.1f} s)",
        flush=True)
  return os.path.abspath(os.path.join(m.workdir, path))


def _evaluate(layout: Layout, ema, step: int, stop: stopping.StopSignal) -> None:
  """The evaluator duty: each training member's evaluators due at ``step`` (only the
  chief holds any); a signal skips the rest."""
  total = layout.members[0].cfg.training.num_train_steps
  for i, m in enumerate(layout.members):
    for ev in m.evals:
      if m.training and not stop.received and itstime(step, ev.every, total):
        scalars = ev.run(layout.member(ema, i), step)
        print(f"{layout.prefix(i)}eval at step {step}: " + ", ".join(
            f"{n} {v:.4f}" for n, v in scalars.items()), flush=True)
        if m.writer is not None:
          m.writer.write_scalars(step, scalars)
        m.reported.update(scalars)


def _report(layout: Layout, state, step: int, on_log: Optional[MemberOnLog]):
  """The search's duty, after a step's logs and evaluations: each training member's
  scalars of this step to ``on_log`` (the chief asks it; every process takes its answer);
  a member it stops is saved at this step and trains no more. Then the layout's
  :meth:`Layout.exploit` (PBT's copies between members); returns the state."""
  reports = {i: dict(m.reported) for i, m in enumerate(layout.members)
             if m.training and m.reported}
  for m in layout.members:
    m.reported = {}
  if on_log is not None:
    _check_finite(layout, state)   # a member never reports (nor is saved) with a NaN/Inf loss
    reports = {i: r for i, r in reports.items() if layout.members[i].training}
    stops = np.zeros(len(layout.members), np.int32)
    if _is_chief():
      for i, scalars in reports.items():
        stops[i] = bool(on_log(i, step, scalars))
    if jax.process_count() > 1:
      stops = np.asarray(multihost_utils.broadcast_one_to_all(stops))
    for i in np.flatnonzero(stops):
      m = layout.members[i]
      if m.last_checkpoint != step:
        m.ckpt.save(step, layout.member(state, i))
        m.last_checkpoint = step
      m.stopped = dict(reports.get(int(i), {}), step=step, stopped=True)
      if _is_chief():
        print(f"{layout.prefix(i)}stopped at step {step} by the search; checkpoint {step} "
              f"is in {os.path.abspath(m.workdir)}", flush=True)
    reports = {i: r for i, r in reports.items() if layout.members[i].training}
  return layout.exploit(state, step, reports)


def _check_finite(layout: Layout, state) -> None:
  """Marks members whose loss became NaN/Inf; the layout says what that stops."""
  bad = np.atleast_1d(sharding.to_host(state.first_nonfinite_step))
  for i, (m, first_bad) in enumerate(zip(layout.members, bad)):
    if first_bad < 0 or not m.training:
      continue
    kept = (f"the last good checkpoint (step {m.last_checkpoint}) is intact"
            if m.last_checkpoint is not None else
            "no checkpoint had been written yet, so the run starts afresh next time")
    m.failure = NonFiniteLossError(
        f"loss became NaN/Inf at step {int(first_bad)}; stopped without saving, {kept}. "
        "Lower optim.lr, enable optim.grad_clip or check the data.")
    layout.failed(i)


def _results(layout: Layout, metrics, step: int, interrupted) -> List[Union[dict, Exception]]:
  """Per member its final metrics (or its failure), and its last line: where it is and
  where its newest grid is."""
  host = sharding.to_host(metrics)
  results = []
  for i, m in enumerate(layout.members):
    if m.failure is not None:
      results.append(m.failure)
      continue
    if m.stopped is not None:
      results.append(dict(m.stopped))
      continue
    final = _scalars(layout, host, i)
    final["step"] = step
    if interrupted:
      final["interrupted"] = interrupted   # a signal stopped it (a checkpoint is saved)
    if _is_chief() and host:
      grid = f", samples {m.grid}" if m.grid else ""
      print(f"{layout.prefix(i)}done: step {step}, loss {final['loss']:.5f}, workdir "
            f"{os.path.abspath(m.workdir)}{grid}", flush=True)
    results.append(final)
  return results


@contextlib.contextmanager
def _claimed(layout: Layout):
  """The members' workdirs, created and locked (by the chief) for the block. Inside it
  Ctrl-C becomes :class:`Interrupted` and a failed write (disk full) one line
  (:func:`diffusion.io.workdir.io_error`); after it, a workdir this call created is
  removed again if no step ran in it."""
  members, locks = layout.members, []
  try:
    for m in members:
      m.created = make_workdir(m.workdir)
      if _is_chief():
        try:
          locks.append(WorkdirLock(m.workdir).acquire())
        except PermissionError as e:   # a read-only workdir
          raise io_error(e, m.workdir, None) from None
    try:
      yield
    except KeyboardInterrupt as e:
      stopped = Interrupted(_interrupted_words(members[0], e))
      stopped.abandoned = getattr(e, "abandoned", False)
      raise stopped from None
    except Exception as e:  # noqa: BLE001 - only write failures are turned into one line
      if isinstance(e, OSError) or is_disk_full(e):
        raise io_error(e, layout.error_dir(), members[0].last_checkpoint) from None
      raise
  finally:
    for lock in locks:
      lock.release()
    for m in members:
      if m.created and not m.started and os.path.isdir(m.workdir):
        shutil.rmtree(m.workdir, ignore_errors=True)   # our own, still without any result


def _interrupted_words(m: Member, e: KeyboardInterrupt) -> str:
  """The one line of a signal that stopped the loop without saving: what it interrupted,
  how many steps were done, which checkpoint a rerun resumes from."""
  name = stopping.signal_words(getattr(e, "signal_name", "SIGINT"))
  saved = m.last_checkpoint
  kept = (f"checkpoint {saved} is intact: run the same command again to resume from step "
          f"{saved}." if saved is not None else "nothing was saved.")
  if m.done_step is None:
    when = ("while compiling the training step, before the first step"
            if getattr(e, "phase", None) == stopping.COMPILING else "before the first step")
    return f"interrupted ({name}) {when}; {kept}"
  if saved == m.done_step:
    return f"interrupted ({name}) at step {m.done_step}; {kept}"
  lost = ("no checkpoint had been written yet, so a rerun starts from step 0 (one signal "
          "alone saves within a call)." if saved is None else kept)
  return (f"interrupted ({name}) twice: stopped without saving; the last finished step "
          f"was {m.done_step} (the call running then is dropped); {lost}")


def _close_files(members: Sequence[Member]) -> None:
  for m in members:
    if m.writer is not None:
      m.writer.close()
    if m.ckpt is not None:
      m.ckpt.close()


def _is_chief() -> bool:
  """Process 0 writes the files and runs samples and evaluations."""
  return jax.process_index() == 0


def _local(tree):
  """``tree`` usable by this process alone (sampling, evaluation on the chief): the
  arrays themselves in a one-process run, host copies when several processes share them."""
  return tree if jax.process_count() == 1 else sharding.to_host(tree)

"""Orbax checkpoints of the train state: save, automatic resume, safe fallback.

Layout: ``<workdir>/checkpoints/<step>/`` written by an orbax ``CheckpointManager``
with two items, ``state`` (step, parameters, optimizer state, hyperparameters, and the
post-hoc EMA profiles of a run that tracks them) and
``ema_params`` (the EMA parameters on their own, so sampling and evaluation
restore them without building an optimizer). Checkpoints hold plain arrays only
(no pickled objects), so they survive library upgrades.

Resume is automatic: the same ``--workdir`` continues from its latest readable
checkpoint. A checkpoint that cannot be read (corrupt, emptied) is reported,
skipped and moved aside to ``checkpoints/unreadable_<step>`` the moment it is
found, never deleted; so ``keep_checkpoints`` counts readable checkpoints only and
never removes the newest readable one. A save interrupted by kill -9 or a full
disk leaves only orbax's temporary folder, which the next writer removes. A
read-only Checkpointer (``sample.py``) skips unreadable checkpoints but moves
nothing.
"""

import contextlib
import gc
import logging
import os
import sys
import tempfile
from typing import Any, Dict, Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp

from diffusion.errors import ConfigError

log = logging.getLogger(__name__)

ITEMS = ("state", "ema_params")


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints")


def _split(state) -> Dict[str, Any]:
  """A TrainState as the two saved items; the post-hoc EMA profiles, where a run tracks
  any, go into ``state`` (a run without them writes what it always wrote)."""
  saved = {"step": state.step, "params": state.params, "opt_state": state.opt_state,
           "hparams": state.hparams, "first_nonfinite_step": state.first_nonfinite_step}
  if jax.tree.leaves(state.phema_params):
    saved["phema_params"] = list(state.phema_params)
  return {"state": saved, "ema_params": state.ema_params}


def _abstract(tree: Any) -> Any:
  """Restore targets with a sharding: the target's own, else this process's first device.

  A target without one (``jax.eval_shape``) would make orbax use the sharding saved in
  the checkpoint, which fails on another topology (trained on 8 devices, sampled on 1).
  """
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

  def struct(x):
    s = ocp.utils.to_shape_dtype_struct(x)
    if getattr(s, "sharding", None) is None:
      s = jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device)
    return s

  return jax.tree.map(struct, tree)


class Checkpointer:
  """Saves and restores train states under ``<workdir>/checkpoints``."""

  def __init__(self, workdir: str, keep: int = 3, read_only: bool = False):
    self.directory = checkpoint_dir(workdir)
    self.read_only = read_only
    with _absl_warnings_muted(read_only):
      options = ocp.CheckpointManagerOptions(
          max_to_keep=keep, create=not read_only, read_only=read_only,
          cleanup_tmp_directories=not read_only, enable_async_checkpointing=False)
      self._manager = ocp.CheckpointManager(
          self.directory, options=options,
          item_handlers={name: ocp.StandardCheckpointHandler() for name in ITEMS})

  def steps(self) -> list[int]:
    """Steps with a finalised checkpoint, ascending."""
    self._manager.reload()
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any) -> None:
    """Writes the TrainState ``state`` as checkpoint ``step`` (blocking, atomic rename)."""
    path = os.path.join(self.directory, str(step))
    if os.path.exists(path):
      if step in self.steps():
        try:
          self._restore_items(step, _split(state))
          return  # already saved and readable: nothing to do
        except Exception:  # noqa: BLE001 - any failure means unreadable
          pass
      self._move_aside(step)
    # orbax refuses an item without arrays (the analytic model's parameters): a stand-in.
    items = {n: t if jax.tree.leaves(t) else {"empty": np.zeros((), np.int8)}
             for n, t in _split(state).items()}
    with _quiet_writer_threads():
      self._manager.save(step, args=ocp.args.Composite(
          **{name: ocp.args.StandardSave(items[name]) for name in ITEMS}))
      self._manager.wait_until_finished()

  def _move_aside(self, step: int) -> None:
    """Renames checkpoint ``step`` to ``unreadable_<step>`` (``.1``, ``.2``, ... if taken)."""
    path = os.path.join(self.directory, str(step))
    aside, n = os.path.join(self.directory, f"unreadable_{step}"), 1
    while os.path.exists(aside):          # an earlier one of that step stays too
      aside, n = os.path.join(self.directory, f"unreadable_{step}.{n}"), n + 1
    log.warning("moving unreadable checkpoint %s aside to %s", path, aside)
    os.replace(path, aside)
    self._manager.reload()

  def _restore_items(self, step: int, targets: Dict[str, Any]) -> Dict[str, Any]:
    arrays = {name: t for name, t in targets.items() if jax.tree.leaves(t)}
    restored = self._manager.restore(step, args=ocp.args.Composite(
        **{name: ocp.args.StandardRestore(_abstract(t)) for name, t in arrays.items()}))
    # An item without arrays (saved as a stand-in) is its target itself.
    return {name: restored[name] if name in arrays else targets[name] for name in targets}

  def _checked_restore(self, step: int, targets: Dict[str, Any]) -> Dict[str, Any]:
    try:
      stored = self._manager.item_metadata(step)
    except Exception:  # noqa: BLE001 - unreadable metadata: try the arrays anyway
      stored = None
    if stored is not None and not list(stored.keys()):
      raise ValueError("the checkpoint folder holds no items")   # empty: unreadable
    if stored is not None:
      for name, target in targets.items():
        meta = stored[name] if name in stored.keys() else None
        if meta is None:
          raise ConfigError(f"checkpoint {os.path.join(self.directory, str(step))} has no "
                            f"item {name!r}: it was written by another version or config; "
                            "use a new --workdir.")
        self._check_matches(step, getattr(meta, "tree", meta), target)
    return self._restore_items(step, targets)

  def restore(self, step: int, target: Any) -> Any:
    """Restores checkpoint ``step`` as a TrainState shaped like ``target``.

    Raises ConfigError when it was written by a different config (other array
    names or shapes); other read errors propagate.
    """
    items = self._checked_restore(step, _split(target))
    s = items["state"]
    return target.replace(step=s["step"], params=s["params"], opt_state=s["opt_state"],
                          hparams=s["hparams"], first_nonfinite_step=s["first_nonfinite_step"],
                          ema_params=items["ema_params"],
                          phema_params=tuple(s.get("phema_params", ())))

  def restore_ema_params(self, step: int, target: Any) -> Any:
    """Only the EMA parameters of checkpoint ``step``, shaped like ``target`` (params)."""
    return self._checked_restore(step, {"ema_params": target})["ema_params"]

  def restore_latest(self, target: Any) -> tuple[Any, int | None]:
    """Restores the newest readable checkpoint shaped like ``target``.

    Returns ``(state, step)``, or ``(target, None)`` when there is none.
    Unreadable checkpoints are skipped with a warning (and kept on disk).
    Raises ConfigError when a checkpoint was written by a different config
    (its arrays do not match ``target``'s shapes).
    """
    return self._latest(lambda step: self.restore(step, target), target)

  def restore_latest_ema_params(self, target: Any) -> tuple[Any, int | None]:
    """:meth:`restore_latest` for the EMA parameters alone (``target``: params)."""
    return self._latest(lambda step: self.restore_ema_params(step, target), target)

  def _latest(self, restore, default):
    tried = set()
    for _ in range(3):   # a reader racing the writer: steps it listed may be gone, newer ones
      steps = [step for step in reversed(self.steps()) if step not in tried]   # written
      for step in steps:
        tried.add(step)
        try:
          with _late_read_failures_muted(os.path.join(self.directory, str(step))):
            restored = restore(step)
        except ConfigError:
          raise
        except Exception as e:  # noqa: BLE001 - corrupt files raise many types
          if not os.path.isdir(os.path.join(self.directory, str(step))):
            continue   # removed meanwhile by the run's keep_checkpoints: look again
          log.warning("checkpoint %d is unreadable (%s); falling back", step, _first_line(e))
          if not self.read_only:
            self._move_aside(step)
          continue
        return restored, step
      if not steps:
        break
    return default, None

  def _check_matches(self, step: int, stored: Any, target: Any) -> None:
    """Raises ConfigError when checkpoint ``step`` has other shapes than ``target``."""
    path = os.path.join(self.directory, str(step))
    want = [(_path_names(p), leaf) for p, leaf in jax.tree_util.tree_flatten_with_path(target)[0]]
    have = {_path_names(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(
        stored, is_leaf=lambda x: hasattr(x, "shape"))[0]}
    for key_path, leaf in want:
      name = "/".join(key_path)
      if key_path not in have:
        raise ConfigError(
            f"checkpoint {path} has no array {name}: it was written by a different "
            "config; use that config or a new --workdir.")
      if tuple(have[key_path].shape) != tuple(leaf.shape):
        raise ConfigError(
            f"checkpoint {path} does not match this config: {name} has shape "
            f"{tuple(have[key_path].shape)} there but {tuple(leaf.shape)} here; use the config "
            "that wrote it or a new --workdir.")

  def close(self):
    self._manager.close()


@contextlib.contextmanager
def _quiet_writer_threads() -> Iterator[None]:
  """While orbax writes, stderr (file descriptor 2) goes to a buffer, replayed on success.

  A failed write (e.g. a full disk) otherwise prints pages of TensorStore specs and
  "Event loop is closed" tracebacks from several C++ and Python threads; the save's
  own exception carries the reason, and the caller turns it into one line.
  """
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as buffer:
    os.dup2(buffer.fileno(), 2)
    failed = True
    try:
      yield
      failed = False
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      if not failed:
        buffer.seek(0)
        text = buffer.read()
        if text:
          os.write(2, text)


@contextlib.contextmanager
def _absl_warnings_muted(mute: bool) -> Iterator[None]:
  """A read-only manager makes orbax warn three times that it adjusted its own options
  ("read_only=True, setting save_interval_steps=0", ...): noise to a reader of
  ``diffusion.load`` or sample.py, so absl's logger is raised to ERROR meanwhile."""
  absl_log = logging.getLogger("absl")
  level = absl_log.level
  if mute:
    absl_log.setLevel(logging.ERROR)
  try:
    yield
  finally:
    absl_log.setLevel(level)


@contextlib.contextmanager
def _late_read_failures_muted(step_dir: str) -> Iterator[None]:
  """Around one restore: what an unreadable checkpoint's other reads print is dropped.

  orbax restores every array concurrently; when one read fails it closes its event loop
  while TensorStore still finishes the others. Each late read then (a) calls back into
  the closed loop, raising "Event loop is closed" through ``sys.unraisablehook`` (a
  traceback apiece: 16 for the toy MLP), and (b) leaves a failed future whose
  "exception was never retrieved" prints a page of TensorStore spec when collected.
  The one-line warning of :meth:`Checkpointer._latest` says it all, so while this is
  active the hook drops exactly (a), and asyncio's log drops (b)'s records naming
  ``step_dir``. A restore that succeeds takes the hook back; after a failure it stays
  (late reads may finish after the fallback), and the dead futures are collected now.
  """
  previous = sys.unraisablehook

  def hook(unraisable):
    e = unraisable.exc_value
    if not (isinstance(e, RuntimeError) and str(e) == "Event loop is closed"):
      previous(unraisable)

  sys.unraisablehook = hook
  asyncio_log = logging.getLogger("asyncio")
  failed_reads = _ReadsOf(os.path.join(os.path.abspath(step_dir), ""))
  asyncio_log.addFilter(failed_reads)
  try:
    yield
  except Exception:
    gc.collect()
    raise
  if sys.unraisablehook is hook:
    sys.unraisablehook = previous
  asyncio_log.removeFilter(failed_reads)


class _ReadsOf(logging.Filter):
  """Drops log records whose exception names the folder ``step_dir``."""

  def __init__(self, step_dir: str):
    super().__init__()
    self.step_dir = step_dir

  def filter(self, record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    return exc is None or self.step_dir not in str(exc)


def _path_names(path) -> tuple[str, ...]:
  """A tree path as plain names, whether it went through attributes, dict keys or indices."""
  names = []
  for k in path:
    for attr in ("name", "key", "idx"):
      if hasattr(k, attr):
        names.append(str(getattr(k, attr)))
        break
    else:
      names.append(str(k))
  return tuple(names)


def _first_line(e: Exception) -> str:
  text = str(e).strip().splitlines()
  return (text[0] if text else type(e).__name__)[:200]

"""The workdir of a run: its resolved config, its checkpoints' EMA parameters, its samples.

A run is a config plus a workdir. Everything that reads or writes a workdir goes
through here or through :mod:`diffusion.io.checkpoints` / :mod:`diffusion.io.metric_writers`:

  <workdir>/config.json            the resolved config (every field, defaults included)
  <workdir>/config.<time>.json     the previous one, when a resume changed the config
  <workdir>/checkpoints/<step>/    orbax: items ``state`` and ``ema_params``
  <workdir>/metrics.jsonl, tb/     one row per log step; TensorBoard
  <workdir>/samples/step_*.png|npy EMA sample grids written during training
  <workdir>/.lock                  held by the one process that writes the run (fcntl)

Nothing here builds an optimizer or reads training data: ``sample.py`` restores
the EMA parameters with the shapes the config implies.
"""

import errno
import fcntl
import json
import logging
import os
import re
import socket
import time
from typing import Any, Optional, Tuple

import ml_collections
import numpy as np

from diffusion.io import atomic
from diffusion.io import images
from diffusion.io.checkpoints import Checkpointer
from diffusion.config import parse_config, to_config_dict
from diffusion.errors import ConfigError, WorkdirError

log = logging.getLogger(__name__)


class WorkdirLock:
  """An exclusive OS lock on ``<workdir>/.lock`` for the life of a run.

  ``fcntl.flock`` is released by the kernel when the process ends, however it
  ends (kill -9 included), so a dead run never leaves a stale lock. The file
  names the holder (PID, host, start time) for the message a second writer gets.
  Readers (``sample.py``) take no lock: checkpoints appear by atomic rename.
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, ".lock")
    self._fd: Optional[int] = None

  def acquire(self) -> "WorkdirLock":
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      os.close(fd)
      if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        raise
      raise WorkdirError(
          f"--workdir={os.path.dirname(self.path)} is in use by {self._holder()}; wait for "
          "that run to end (or stop it), or use another --workdir.") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()} since "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
    os.fsync(fd)
    self._fd = fd
    return self

  def _holder(self) -> str:
    try:
      with open(self.path, encoding="utf-8") as f:
        text = f.read().strip()
    except OSError:
      text = ""
    return text or "another process"

  def release(self) -> None:
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()


def check_workdir(workdir: str) -> None:
  """ConfigError when ``workdir`` exists but is not a folder."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"--workdir={workdir} is a file, not a folder; give a folder (it is "
                      "created if needed).")


def make_workdir(workdir: str) -> bool:
  """Creates ``workdir`` (and missing parents); True when it did not exist. A path the
  system refuses (read-only parent, a name over 255 characters, a path over the limit)
  raises WorkdirError as one line and leaves no folder behind."""
  if os.path.isdir(workdir):
    return False
  first_new = os.path.abspath(workdir)
  while not os.path.exists(os.path.dirname(first_new)) and os.path.dirname(first_new) != first_new:
    first_new = os.path.dirname(first_new)
  try:
    os.makedirs(workdir)
  except FileExistsError:
    if os.path.isdir(workdir):   # another process made it meanwhile: its lock decides
      return False
    raise WorkdirError(f"--workdir={workdir} is a file, not a folder.") from None
  except OSError as e:
    _remove_empty_folders(os.path.abspath(workdir), first_new)
    why = {errno.ENAMETOOLONG: "a folder name over 255 characters or a path over the "
                               "system's limit"}.get(e.errno, e.strerror or str(e))
    raise WorkdirError(f"--workdir={workdir[:120]}{'...' if len(workdir) > 120 else ''} cannot "
                       f"be created ({why}); give a shorter or writable path.") from None
  return True


def _remove_empty_folders(deepest: str, top: str) -> None:
  """Removes the folders from ``deepest`` up to ``top`` that are empty (what a failed
  makedirs left), never a folder with anything in it (another process's run)."""
  path = deepest
  while path.startswith(top) and path != os.path.abspath(os.sep):
    try:
      os.rmdir(path)
    except OSError:
      pass
    if path == top:
      break
    path = os.path.dirname(path)


def is_disk_full(e: BaseException) -> bool:
  """Whether an exception (OSError, or a wrapped TensorStore/orbax error) means no space."""
  while e is not None:
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    if "No space left on device" in str(e) or "Disk quota exceeded" in str(e):
      return True
    e = e.__cause__ or e.__context__
  return False


def io_error(e: BaseException, workdir: str, last_checkpoint: Optional[int]) -> WorkdirError:
  """The one-line error for a failed write under ``workdir`` (disk full, permissions...)."""
  path = getattr(e, "filename", None)
  if not path:  # TensorStore names the file in its message
    named = re.search(r'file "([^"]+)"', str(e))
    path = named.group(1) if named else workdir
  kept = (f"checkpoint {last_checkpoint} is intact" if last_checkpoint is not None
          else "no checkpoint had been written yet")
  if is_disk_full(e):
    return WorkdirError(f"no space left on the device writing {path}; {kept}. Free space "
                        "(or move the run) and run the same command again to resume.")
  reason = getattr(e, "strerror", None) or str(e).splitlines()[0][:160]
  return WorkdirError(f"cannot write {path} ({reason}); {kept}. Fix the folder and run the "
                      "same command again to resume.")


def config_json(config) -> str:
  """The resolved config (every field) as the JSON text written to the workdir."""
  return json.dumps(parse_config(config).to_dict(), indent=2, sort_keys=True)


def write_config(config, workdir: str) -> None:
  """Writes the resolved config to ``<workdir>/config.json`` (human-readable).

  On resume with a changed config the previous file is kept as
  ``config.<unix time>.json`` so the history of a run stays visible.
  """
  path = os.path.join(workdir, "config.json")
  text = config_json(config)
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      old = f.read()
    if old == text:
      return
    os.replace(path, os.path.join(workdir, f"config.{int(time.time())}.json"))
    log.warning("config differs from the one this workdir was started with; "
                "the old one is kept beside config.json")
  atomic.write_text(path, text)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run was trained with, read back from ``<workdir>/config.json``."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise ConfigError(f"--workdir={workdir} has no config.json; point it at a training "
                      "run's workdir.")
  try:
    with open(path, encoding="utf-8") as f:
      raw = json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(f"{path} is not readable JSON ({e}); restore it or start a new "
                      "--workdir.") from None
  return to_config_dict(parse_config(_lists_to_tuples(raw)))


def _lists_to_tuples(x):
  if isinstance(x, dict):
    return {k: _lists_to_tuples(v) for k, v in x.items()}
  if isinstance(x, list):
    return tuple(_lists_to_tuples(v) for v in x)
  return x


def restore_ema_params(workdir: str, family, step: int = -1) -> Tuple[Any, int]:
  """The EMA parameters of checkpoint ``step`` (-1: the newest readable one).

  Shapes come from the config (``family.abstract_params()``); no optimizer is
  built and no data is read.

  Raises:
    ConfigError: no such checkpoint, none readable, or one of another config.
  """
  ckpt = Checkpointer(workdir, keep=family.config.training.keep_checkpoints, read_only=True)
  try:
    target = family.abstract_params()
    if step >= 0:
      if step not in ckpt.steps():
        raise ConfigError(f"--checkpoint_step={step} is not in {ckpt.directory} "
                          f"(available: {ckpt.steps()}).")
      return ckpt.restore_ema_params(step, target), step
    params, found = ckpt.restore_latest_ema_params(target)
    if found is None:
      raise ConfigError(f"no readable checkpoint in {ckpt.directory}; train first.")
    return params, found
  finally:
    ckpt.close()


def save_samples(folder: str, name: str, samples: np.ndarray,
                 images_uint8: Optional[np.ndarray]) -> Optional[np.ndarray]:
  """Writes ``<name>.npy`` (model-space samples) and, for images, ``<name>.png``
  (a grid of at most 256, upscaled to >= 64 px tiles); returns the grid."""
  os.makedirs(folder, exist_ok=True)
  np.save(os.path.join(folder, f"{name}.npy"), samples)
  if images_uint8 is None:
    return None
  return images.save_grid(os.path.join(folder, f"{name}.png"), images_uint8[:256])

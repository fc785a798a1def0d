"""Metric writers: TensorBoard event files and a JSON-lines file, side by side.

``<workdir>/metrics.jsonl`` holds one JSON object per logged step
(``{"step": 100, "loss": 0.031, ...}``; evaluations add rows of ``eval/*`` at their
steps) so runs can be read back with three lines of Python; ``<workdir>/tb/``
holds TensorBoard event files (tensorboardX's protos and record format, so no
TensorFlow import is needed).
With ``training.writers`` naming ``wandb`` (``pip install '.[wandb]'``) the same rows
and the sample grids also go to Weights & Biases: the run is named after the workdir,
its config is the workdir's ``config.json``, and its id is kept in
``<workdir>/wandb_run_id`` so a restarted run logs into the same W&B run.
``WANDB_MODE=offline`` keeps everything under ``<workdir>/wandb/`` (``wandb sync`` it later).

Logs stay true across resumes: a run resumed from checkpoint S first drops the
metrics.jsonl rows after S (an atomic rewrite) and starts its TensorBoard file
with ``purge_step=S+1``, so TensorBoard hides the killed run's events past S;
every step then appears once. Both files are written and flushed in the caller's
thread at every write, so a kill -9 loses nothing that was logged.
"""

import json
import os
import secrets
import time
from typing import Optional

import numpy as np
from tensorboardX import summary as tb_summary
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto import event_pb2, summary_pb2

from diffusion.errors import ConfigError
from diffusion.io import atomic

WANDB_ID_FILE = "wandb_run_id"


def parse_writers(writers) -> tuple:
  """``"jsonl,tensorboard"`` (training.writers) or a sequence, as a tuple of names."""
  if isinstance(writers, str):
    writers = writers.split(",")
  return tuple(w.strip() for w in writers if w.strip())


class WandbWriter:
  """The rows of metrics.jsonl and the sample grids, logged to one W&B run per workdir.

  The run id is created once and stored in ``<workdir>/wandb_run_id``; a restart
  resumes that run (``resume="allow"``), so one workdir is one W&B run. Rows after
  ``resume_step`` that a killed process logged are not rewritten (W&B keeps the
  first value of a step).
  """

  def __init__(self, workdir: str, resume_step: int = 0):
    try:
      import wandb  # pylint: disable=import-outside-toplevel  # optional
    except ImportError:
      raise ConfigError("training.writers names wandb but wandb is not installed: "
                        "pip install '.[wandb]' (or drop wandb from training.writers).") from None
    self._wandb = wandb
    id_path = os.path.join(workdir, WANDB_ID_FILE)
    run_id = None
    if os.path.exists(id_path):
      with open(id_path, encoding="utf-8") as f:
        run_id = f.read().strip() or None
    if run_id is None:
      run_id = secrets.token_hex(6)  # W&B ids: lowercase letters and digits
      atomic.write_text(id_path, run_id + "\n")
    config = {}
    config_path = os.path.join(workdir, "config.json")
    if os.path.exists(config_path):
      try:
        with open(config_path, encoding="utf-8") as f:
          config = json.load(f)
      except (OSError, ValueError):
        config = {}
    name = os.path.basename(os.path.normpath(os.path.abspath(workdir)))
    self.run_id = run_id
    self._last_step = resume_step
    self._run = wandb.init(id=run_id, resume="allow", name=name, config=config,
                           dir=workdir)

  def write_scalars(self, step: int, scalars: dict) -> None:
    self._run.log({k: float(np.asarray(v)) for k, v in scalars.items()}, step=int(step))

  def write_images(self, step: int, name: str, grid_uint8: np.ndarray) -> None:
    self._run.log({name: self._wandb.Image(np.asarray(grid_uint8))}, step=int(step))

  def close(self) -> None:
    try:
      self._run.finish()
    except Exception:  # noqa: BLE001 - a run that already failed
      pass


class EventFile:
  """One TensorBoard event file under ``tb_dir``, written in the caller's thread.

  tensorboardX's ``SummaryWriter`` hands events to a queue drained by a writer thread,
  so its ``flush()`` can return before the last rows reach the file and a kill -9
  then loses them; here each ``write`` is on disk (flushed and fsynced) when it returns.

  Args:
    tb_dir: the folder of event files (created if missing).
    purge_step: when resuming, the first step this run writes; a SessionLog START at
      it makes TensorBoard hide the earlier files' events at steps >= it.
  """

  def __init__(self, tb_dir: str, purge_step: Optional[int] = None):
    os.makedirs(tb_dir, exist_ok=True)
    # tensorboardX names a file by the second and host and opens it "wb": without a
    # finer suffix a second writer within the same second would truncate the first.
    # Nanoseconds also keep TensorBoard's name order equal to the writing order, which
    # its purge of a resumed run's earlier events relies on.
    self._writer = EventsWriter(os.path.join(tb_dir, "events"),
                                f".{time.time_ns()}.{os.getpid()}")
    if purge_step is not None:
      self._write(event_pb2.Event(
          step=int(purge_step), wall_time=time.time(),
          session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))

  def _write(self, event) -> None:
    self._writer.write_event(event)
    self._writer.flush()

  def write_scalars(self, step: int, scalars: dict) -> None:
    """One event holding every scalar of the row."""
    summary = summary_pb2.Summary(value=[
        v for k, x in scalars.items() for v in tb_summary.scalar(k, float(np.asarray(x))).value])
    self._write(event_pb2.Event(summary=summary, step=int(step), wall_time=time.time()))

  def write_image(self, step: int, name: str, grid_uint8: np.ndarray) -> None:
    """An image [H, W, C] uint8."""
    summary = tb_summary.image(name, np.asarray(grid_uint8), dataformats="HWC")
    self._write(event_pb2.Event(summary=summary, step=int(step), wall_time=time.time()))

  def close(self) -> None:
    self._writer.close()


def truncate_metrics(workdir: str, last_step: int) -> int:
  """Drops the rows of ``metrics.jsonl`` after ``last_step`` (atomic); returns how many.

  A torn last line (a write cut by kill -9 or a full disk) is dropped too.
  """
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return 0
  kept, dropped = [], 0
  with open(path, encoding="utf-8", errors="replace") as f:
    for line in f:
      row = parse_row(line)
      if row is None:
        dropped += 1
        continue
      if row["step"] <= last_step:
        kept.append(line if line.endswith("\n") else line + "\n")
      else:
        dropped += 1
  if dropped:
    atomic.write_with(path, lambda f: f.writelines(kept))
  return dropped


class MetricWriter:
  """Writes scalar metrics to TensorBoard and to ``metrics.jsonl``.

  Only process 0 of a multi-host run should create one (others write nothing).

  Args:
    workdir: the run's folder.
    resume_step: the step the run continues from (0 for a new run); rows and
      events after it, left by an interrupted run, are dropped / hidden.
    tensorboard: also write TensorBoard events.
    writers: ``training.writers`` (``"jsonl,tensorboard"``, ``"jsonl,wandb"``, ...);
      when given it decides ``tensorboard``. metrics.jsonl is always written (resume,
      sweeps and summaries read it).
  """

  def __init__(self, workdir: str, resume_step: int = 0, tensorboard: bool = True,
               writers=None):
    os.makedirs(workdir, exist_ok=True)
    names = parse_writers(writers) if writers is not None else (
        ("jsonl", "tensorboard") if tensorboard else ("jsonl",))
    tensorboard = "tensorboard" in names
    self._wandb = WandbWriter(workdir, resume_step) if "wandb" in names else None
    truncate_metrics(workdir, resume_step)
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
    self._tb: Optional[EventFile] = None
    if tensorboard:
      tb_dir = os.path.join(workdir, "tb")
      resumed = os.path.isdir(tb_dir) and bool(os.listdir(tb_dir))
      self._tb = EventFile(tb_dir, purge_step=resume_step + 1 if resumed else None)

  def write_scalars(self, step: int, scalars: dict) -> None:
    row = {"step": int(step), "time": round(time.time(), 3)}
    row.update({k: float(np.asarray(v)) for k, v in scalars.items()})
    self._jsonl.write(json.dumps(row) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      self._tb.write_scalars(step, scalars)
    if self._wandb is not None:
      self._wandb.write_scalars(step, scalars)

  def write_images(self, step: int, name: str, grid_uint8: np.ndarray) -> None:
    """Adds an image [H, W, C] uint8 to TensorBoard."""
    if self._tb is not None:
      self._tb.write_image(step, name, grid_uint8)
    if self._wandb is not None:
      self._wandb.write_images(step, name, grid_uint8)

  def close(self) -> None:
    """Closes both files; safe to call after a failed write (e.g. a full disk)."""
    try:
      self._jsonl.close()
    except OSError:
      pass
    if self._tb is not None:
      try:
        self._tb.close()
      except OSError:  # a file that already failed (a full disk)
        pass
    if self._wandb is not None:
      self._wandb.close()


def read_metrics(workdir: str) -> list[dict]:
  """All readable rows of ``<workdir>/metrics.jsonl`` (empty list if there is none)."""
  return read_metrics_counted(workdir)[0]


def read_metrics_counted(workdir: str) -> tuple[list[dict], int]:
  """(the readable rows of ``<workdir>/metrics.jsonl``, how many lines were unreadable:
  e.g. the last one of a killed process, or a damaged file)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return [], 0
  rows, skipped = [], 0
  with open(path, encoding="utf-8", errors="replace") as f:
    for line in f:
      if not line.strip():
        continue
      row = parse_row(line)
      if row is not None:
        rows.append(row)
      else:
        skipped += 1
  return rows, skipped


def parse_row(line: str) -> Optional[dict]:
  """One line of metrics.jsonl as the row MetricWriter wrote: a JSON object whose "step"
  is an integer >= 0 and whose other values are numbers; None for anything else (a torn
  line, a damaged file), which the readers skip and count."""
  try:
    row = json.loads(line)
  except (ValueError, RecursionError):
    return None
  if not isinstance(row, dict):
    return None
  step = row.get("step")
  if not isinstance(step, int) or isinstance(step, bool) or step < 0:
    return None
  if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row.values()):
    return None
  return row

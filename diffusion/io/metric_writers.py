"""Metric writers: TensorBoard event files and a JSON-lines file, side by side.

``<workdir>/metrics.jsonl`` holds one JSON object per logged step
(``{"step": 100, "loss": 0.031, ...}``; evaluations add rows of ``eval/*`` at their
steps) so runs can be read back with three lines of Python; ``<workdir>/tb/``
holds TensorBoard event files (tensorboardX, so no TensorFlow import is needed).

Logs stay true across resumes: a run resumed from checkpoint S first drops the
metrics.jsonl rows after S (an atomic rewrite) and starts its TensorBoard file
with ``purge_step=S+1``, so TensorBoard hides the killed run's events past S;
every step then appears once. Both files are flushed at every write, so a
kill -9 loses nothing that was logged.
"""

import json
import os
import time
from typing import Optional

import numpy as np
from tensorboardX import SummaryWriter

from diffusion.io import atomic


def truncate_metrics(workdir: str, last_step: int) -> int:
  """Drops the rows of ``metrics.jsonl`` after ``last_step`` (atomic); returns how many.

  A torn last line (a write cut by kill -9 or a full disk) is dropped too.
  """
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return 0
  kept, dropped = [], 0
  with open(path, encoding="utf-8") as f:
    for line in f:
      try:
        row = json.loads(line)
      except ValueError:
        dropped += 1
        continue
      if row.get("step", 0) <= last_step:
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
  """

  def __init__(self, workdir: str, resume_step: int = 0, tensorboard: bool = True):
    os.makedirs(workdir, exist_ok=True)
    truncate_metrics(workdir, resume_step)
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
    self._tb: Optional[SummaryWriter] = None
    if tensorboard:
      tb_dir = os.path.join(workdir, "tb")
      resumed = os.path.isdir(tb_dir) and bool(os.listdir(tb_dir))
      self._tb = SummaryWriter(tb_dir, purge_step=resume_step + 1 if resumed else None)

  def write_scalars(self, step: int, scalars: dict) -> None:
    row = {"step": int(step), "time": round(time.time(), 3)}
    row.update({k: float(np.asarray(v)) for k, v in scalars.items()})
    self._jsonl.write(json.dumps(row) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for k, v in scalars.items():
        self._tb.add_scalar(k, float(np.asarray(v)), int(step))
      self._tb.flush()

  def write_images(self, step: int, name: str, grid_uint8: np.ndarray) -> None:
    """Adds an image [H, W, C] uint8 to TensorBoard."""
    if self._tb is not None:
      self._tb.add_image(name, grid_uint8, int(step), dataformats="HWC")
      self._tb.flush()

  def close(self) -> None:
    """Closes both files; safe to call after a failed write (e.g. a full disk)."""
    try:
      self._jsonl.close()
    except OSError:
      pass
    if self._tb is not None:
      try:
        self._tb.close()
      except Exception:  # noqa: BLE001 - a writer thread that already failed
        pass


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
      try:
        row = json.loads(line)
      except ValueError:
        row = None
      if isinstance(row, dict):
        rows.append(row)
      else:
        skipped += 1
  return rows, skipped

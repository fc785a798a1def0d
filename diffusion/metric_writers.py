"""Metric writers: TensorBoard event files and a JSON-lines file, side by side.

``<workdir>/metrics.jsonl`` holds one JSON object per logged step
(``{"step": 100, "loss": 0.031, ...}``) so runs can be read back with three
lines of Python; ``<workdir>/tb/`` holds TensorBoard event files
(tensorboardX, so no TensorFlow import is needed).
"""

import json
import os
import time

import numpy as np
from tensorboardX import SummaryWriter


class MetricWriter:
  """Writes scalar metrics to TensorBoard and to ``metrics.jsonl``.

  Only process 0 of a multi-host run should create one (others write nothing).
  """

  def __init__(self, workdir: str, tensorboard: bool = True):
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
    self._tb = None
    if tensorboard:
      self._tb = SummaryWriter(os.path.join(workdir, "tb"))

  def write_scalars(self, step: int, scalars: dict) -> None:
    row = {"step": int(step), "time": round(time.time(), 3)}
    row.update({k: float(np.asarray(v)) for k, v in scalars.items()})
    self._jsonl.write(json.dumps(row) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for k, v in scalars.items():
        self._tb.add_scalar(k, float(np.asarray(v)), int(step))

  def write_images(self, step: int, name: str, grid_uint8: np.ndarray) -> None:
    """Adds an image [H, W, C] uint8 to TensorBoard."""
    if self._tb is not None:
      self._tb.add_image(name, grid_uint8, int(step), dataformats="HWC")

  def close(self) -> None:
    self._jsonl.close()
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
  """All rows of ``<workdir>/metrics.jsonl`` (empty list if there is none)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]

"""diffusion/io/metric_writers.py: metrics.jsonl and TensorBoard rows on disk when a write
returns and true across resumes, and W&B as an optional writer."""

import glob
import json
import os
import struct
import sys
import types

import numpy as np
import pytest

from diffusion.errors import ConfigError
from diffusion.io import metric_writers


def read_tensorboard_events(workdir):
  """Every readable Event of <workdir>/tb, files in the order they were written."""
  from tensorboardX.proto import event_pb2  # pylint: disable=import-outside-toplevel
  events = []
  for path in sorted(glob.glob(os.path.join(workdir, "tb", "events.out.tfevents.*")),
                     key=os.path.getmtime):
    with open(path, "rb") as f:
      data = f.read()
    pos = 0
    while pos + 12 <= len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      record = data[pos + 12:pos + 12 + length]
      if len(record) < length:
        break                                    # a torn last record is not readable
      pos += 12 + length + 4
      events.append(event_pb2.Event.FromString(record))
  return events


def read_tensorboard_tags(workdir):
  return {v.tag for e in read_tensorboard_events(workdir) for v in e.summary.value}


def read_tensorboard_scalars(workdir, tag="loss"):
  """{step: value} of a tag over all event files in order, with TensorBoard's purge rule:
  a SessionLog.START at step S hides every earlier event with step >= S."""
  out = {}
  for event in read_tensorboard_events(workdir):
    if event.HasField("session_log") and event.session_log.status == 1:  # START
      out = {s: v for s, v in out.items() if s < event.step}
    for value in event.summary.value:
      if value.tag == tag:
        out[event.step] = value.simple_value
  return out


# ---- logs stay true across resumes ----------------------------------------------------------


def test_metrics_after_the_restored_step_are_dropped(tmp_path):
  workdir = str(tmp_path)
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    for step in (10, 20, 30, 40):
      f.write(json.dumps({"step": step, "loss": 1.0}) + "\n")
    f.write('{"step": 50, "lo')                        # a torn line from kill -9
  assert metric_writers.truncate_metrics(workdir, 20) == 3
  assert [r["step"] for r in metric_writers.read_metrics(workdir)] == [10, 20]
  writer = metric_writers.MetricWriter(workdir, resume_step=20)
  writer.write_scalars(30, {"loss": 0.5})
  writer.close()
  assert [r["step"] for r in metric_writers.read_metrics(workdir)] == [10, 20, 30]


def test_tensorboard_rows_are_on_disk_when_the_write_returns(tmp_path):
  """A kill -9 right after a write loses nothing: each row (and image) is in the event
  file when write_* returns, with no writer thread still holding it; a resume's purge
  hides the earlier file's events from its first step on."""
  workdir = str(tmp_path)
  writer = metric_writers.MetricWriter(workdir)
  for step in range(1, 31):
    writer.write_scalars(step, {"loss": step / 10, "lr": 1e-3})
    assert sorted(read_tensorboard_scalars(workdir)) == list(range(1, step + 1))
  writer.write_images(30, "samples", np.zeros((8, 8, 3), np.uint8))
  assert read_tensorboard_scalars(workdir, tag="lr") == {s: np.float32(1e-3) for s in range(1, 31)}
  assert "samples" in read_tensorboard_tags(workdir)
  # Left open, as a killed process leaves it; the resume from step 20 rewrites 21 on.
  again = metric_writers.MetricWriter(workdir, resume_step=20)
  again.write_scalars(21, {"loss": -1.0})
  again.close()
  scalars = read_tensorboard_scalars(workdir)
  assert sorted(scalars) == list(range(1, 22)) and scalars[21] == -1.0
  writer.close()


# ---- W&B as an optional writer --------------------------------------------------------------


class _FakeRun:
  def __init__(self, log, kwargs):
    self.log_calls, self.kwargs, self.finished = log, kwargs, False

  def log(self, row, step):
    self.log_calls.append((step, row))

  def finish(self):
    self.finished = True


def _fake_wandb(monkeypatch):
  calls = {"init": [], "log": []}
  mod = types.ModuleType("wandb")
  mod.util = types.SimpleNamespace(generate_id=lambda: f"id{len(calls['init'])}abc")
  mod.Image = lambda arr: ("image", arr.shape)

  def init(**kwargs):
    calls["init"].append(kwargs)
    run = _FakeRun(calls["log"], kwargs)
    run.log = lambda row, step: calls["log"].append((step, row))
    return run
  mod.init = init
  monkeypatch.setitem(sys.modules, "wandb", mod)
  return calls


def test_wandb_writer_same_rows_name_config_and_resume(tmp_path, monkeypatch):
  calls = _fake_wandb(monkeypatch)
  w = tmp_path / "my_run"
  w.mkdir()
  (w / "config.json").write_text(json.dumps({"training": {"batch_size": 8}}))
  mw = metric_writers.MetricWriter(str(w), writers="jsonl,wandb")
  mw.write_scalars(10, {"loss": np.float32(0.5)})
  mw.write_images(10, "samples", np.zeros((8, 8, 3), np.uint8))
  mw.close()
  assert not (w / "tb").exists()                         # tensorboard not asked for
  init = calls["init"][0]
  assert init["name"] == "my_run" and init["config"] == {"training": {"batch_size": 8}}
  assert init["resume"] == "allow" and init["dir"] == str(w)
  run_id = (w / metric_writers.WANDB_ID_FILE).read_text().strip()
  assert init["id"] == run_id
  row = metric_writers.read_metrics(str(w))[0]
  assert calls["log"][0] == (10, {"loss": row["loss"]})   # the metrics.jsonl row
  assert calls["log"][1] == (10, {"samples": ("image", (8, 8, 3))})
  # A restart logs into the same run.
  mw = metric_writers.MetricWriter(str(w), resume_step=10, writers="jsonl,tensorboard,wandb")
  mw.close()
  assert calls["init"][1]["id"] == run_id and (w / "tb").exists()


def test_default_writers_do_not_need_wandb(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "wandb", None)       # import wandb fails
  mw = metric_writers.MetricWriter(str(tmp_path))
  mw.write_scalars(1, {"loss": 1.0})
  mw.close()
  assert (tmp_path / "tb").exists() and (tmp_path / "metrics.jsonl").exists()
  with pytest.raises(ConfigError, match=r"pip install '\.\[wandb\]'"):
    metric_writers.MetricWriter(str(tmp_path / "x"), writers="jsonl,wandb")

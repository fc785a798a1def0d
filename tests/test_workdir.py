"""A workdir that survives faults: one writer, retention of readable checkpoints only,
logs that stay true across resumes, one-line errors for disk and command-line faults."""

import glob
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from configs import base
from diffusion.config import checks as config_check
from diffusion.io import metric_writers
from diffusion.errors import ConfigError, WorkdirError
from diffusion.train.loop import train
from test_training import saved_steps, toy_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = ["--config=configs/ddpm/toy_mixture.py", "--progress=false"]


def run_cli(script, *args, timeout=300):
  return subprocess.run([sys.executable, os.path.join(REPO, script), *args], cwd=REPO,
                        capture_output=True, text=True, timeout=timeout)


def error_line(stderr: str) -> str:
  """The last non-empty line of stderr; the CLIs print exactly one ``error:`` line."""
  lines = [l for l in stderr.strip().splitlines() if l.strip()]
  return lines[-1] if lines else ""


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


# ---- one writer at a time --------------------------------------------------------------


@pytest.mark.slow
def test_two_processes_on_one_workdir_one_trains_the_other_exits(tmp_path):
  workdir = tmp_path / "run"
  args = TOY + [f"--workdir={workdir}", "--config.training.num_train_steps=200",
                "--config.training.log_every=20", "--config.training.checkpoint_every=100"]
  procs = [subprocess.Popen([sys.executable, "train.py", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
  results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
  codes = sorted(r[0] for r in results)
  assert codes == [0, 2], [r[2][-1500:] for r in results]
  loser = next(r for r in results if r[0] == 2)
  line = error_line(loser[2])
  assert line.startswith(f"error: --workdir={workdir} is in use by pid ") and " on host " in line
  assert "Traceback" not in loser[2]
  rows = metric_writers.read_metrics(str(workdir))
  assert [r["step"] for r in rows] == list(range(20, 201, 20))   # as after a single run
  assert saved_steps(workdir) == [100, 200]


def test_lock_is_released_when_the_holder_ends(tmp_path):
  from diffusion.io.workdir import WorkdirLock  # pylint: disable=import-outside-toplevel
  lock = WorkdirLock(str(tmp_path)).acquire()
  with pytest.raises(WorkdirError, match=rf"is in use by pid {os.getpid()} on host"):
    WorkdirLock(str(tmp_path)).acquire()
  lock.release()
  WorkdirLock(str(tmp_path)).acquire().release()
  # A holder killed with SIGKILL releases it too (the kernel drops the flock).
  holder = subprocess.Popen([sys.executable, "-c", (
      "import sys, time; sys.path.insert(0, %r); from diffusion.io.workdir import WorkdirLock; "
      "WorkdirLock(%r).acquire(); print('held', flush=True); time.sleep(60)")
      % (REPO, str(tmp_path))], stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == "held"
  with pytest.raises(WorkdirError):
    WorkdirLock(str(tmp_path)).acquire()
  holder.kill()
  holder.wait()
  WorkdirLock(str(tmp_path)).acquire().release()


# ---- retention counts readable checkpoints only -------------------------------------------------


def test_retention_keeps_the_good_checkpoint_and_moves_bad_ones_aside(tmp_path):
  """75 good, 80 and 175 corrupt, an empty 300/: the run resumes from 75, keeps it, and
  moves 80, 175 and 300 aside instead of counting them against keep_checkpoints."""
  workdir = str(tmp_path / "run")
  cfg = toy_config(**{"training.num_train_steps": 75, "training.checkpoint_every": 25,
                      "training.log_every": 25, "training.keep_checkpoints": 3})
  train(cfg, workdir, progress=False)
  ckdir = os.path.join(workdir, "checkpoints")
  assert saved_steps(workdir) == [25, 50, 75]
  for bad in (80, 175):
    shutil.copytree(os.path.join(ckdir, "75"), os.path.join(ckdir, str(bad)))
    for f in glob.glob(os.path.join(ckdir, str(bad), "**", "d", "*"), recursive=True):
      with open(f, "wb") as fh:
        fh.write(b"corrupt")
  os.makedirs(os.path.join(ckdir, "300"))
  more = toy_config(**{"training.num_train_steps": 100, "training.checkpoint_every": 25,
                       "training.log_every": 25, "training.keep_checkpoints": 3})
  final = train(more, workdir, progress=False)
  assert final["step"] == 100
  assert saved_steps(workdir) == [50, 75, 100]
  names = sorted(os.listdir(ckdir))
  assert "unreadable_80" in names and "unreadable_175" in names
  assert "300" not in names and "80" not in names and "175" not in names


# ---- logs stay true across resumes ---------------------------------------------------------


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


# ---- disk full ---------------------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path):
  mount = tmp_path / "tmpfs"
  mount.mkdir()
  res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                       capture_output=True, text=True)
  if res.returncode:
    pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or 'not permitted'})")
  yield mount
  subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow
def test_disk_full_is_one_line_and_the_run_resumes_after_space_is_freed(small_tmpfs):
  workdir = small_tmpfs / "run"
  args = TOY + [f"--workdir={workdir}", "--config.training.num_train_steps=400",
                "--config.training.log_every=10", "--config.training.checkpoint_every=50"]
  filler = small_tmpfs / "filler"
  filler.touch()            # before the run: its checkpoints may fill the disk on their own
  proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=REPO, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  deadline = time.time() + 200
  while time.time() < deadline and not saved_steps(workdir):
    time.sleep(0.05)
  assert saved_steps(workdir), "no first checkpoint"
  with open(filler, "ab") as f:                     # take every free byte of the disk
    try:
      while True:
        f.write(b"\0" * 65536)
        f.flush()
    except OSError:
      pass
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 2, err[-2000:]
  assert error_line(err).startswith("error: no space left on the device writing ")
  assert "checkpoint" in error_line(err) and "Traceback" not in err
  kept = saved_steps(workdir)
  assert kept and kept[-1] < 400
  filler.unlink()
  res = run_cli("train.py", *args)
  assert res.returncode == 0, res.stderr[-2000:]
  assert f"resumed from step {kept[-1]}" in res.stdout and "done: step 400" in res.stdout
  steps = [r["step"] for r in metric_writers.read_metrics(str(workdir))]
  assert steps == list(range(10, 401, 10))           # every step once


# ---- every bad value caught before anything compiles --------------------------------------------


BAD_VALUES = [
    # numbers that must be finite and positive
    ("optim.lr", float("inf")), ("optim.lr", float("nan")), ("optim.lr", 0.0),
    ("optim.eps", -1e-8), ("diffusion.sigma_max", float("inf")), ("diffusion.cosine_s", 0.0),
    ("sampling.step_size", -1.0),
    # ranges
    ("model.dropout", 1.0), ("model.dropout", -0.1), ("training.ema_decay", 1.0),
    ("optim.beta1", 1.0), ("optim.beta2", -0.5), ("optim.decay_rate", -1.0),
    ("optim.decay_rate", 0.0), ("optim.weight_decay", -1.0), ("optim.grad_clip", -1.0),
    ("diffusion.beta_end", 1.5), ("diffusion.hybrid_lambda", -0.1), ("sampling.eta", -0.1),
    # counts >= 1 (or >= 0)
    ("training.num_samples", 0), ("training.num_samples", -4), ("training.batch_size", 0),
    ("training.seed", -1), ("training.log_every", 0), ("training.keep_checkpoints", 0),
    ("training.steps_per_call", 0), ("training.sample_every", -1), ("model.ch", 0),
    ("model.num_res_blocks", 0), ("diffusion.num_timesteps", 0), ("optim.warmup_steps", -1),
    ("sampling.n_steps_each", 0), ("eval.bpd.num_examples", 0), ("eval.fid.num_samples", 1),
    # types
    ("model.ch_mult", 2), ("model.attn_resolutions", 16), ("training.batch_size", 2.5),
    ("data.random_flip", "yes"), ("training.num_train_steps", True),
]
BAD_COMBINATIONS = [
    ({"diffusion.beta_start": 0.03}, "diffusion.beta_start"),          # above beta_end
    ({"optim.min_lr": 1.0}, "optim.min_lr"),                           # above lr
    ({"optim.decay_steps": 100}, "optim.decay_steps"),                 # constant schedule
    ({"optim.weight_decay": 0.1}, "optim.weight_decay"),               # adam has none
    ({"diffusion.variant": "ncsn", "diffusion.schedule": "geometric",
      "diffusion.sigma_min": 2.0}, "diffusion.sigma_min"),             # above sigma_max
    ({"training.log_every": 3, "training.steps_per_call": 2}, "training.log_every"),
    ({"eval.bpd.every": 3, "training.steps_per_call": 2}, "eval.bpd.every"),
    ({"eval.fid.every": 10}, "eval.fid.every"),                        # no weights
]


def _set(config, key, value):
  node = config
  *parents, name = key.split(".")
  for p in parents:
    node = node[p]
  node[name] = value


@pytest.mark.parametrize("key,value", BAD_VALUES, ids=[f"{k}={v!r}" for k, v in BAD_VALUES])
def test_bad_value_names_its_field(key, value):
  config = base.get_config("ddpm")
  with config.ignore_type():
    _set(config, key, value)
  with pytest.raises(ConfigError) as info:
    config_check.validate(config)
  message = str(info.value)
  assert message.startswith(key + "=") and "\n" not in message, message


@pytest.mark.parametrize("overrides,field", BAD_COMBINATIONS,
                         ids=[",".join(o) for o, _ in BAD_COMBINATIONS])
def test_bad_combination_names_the_field_the_user_wrote(overrides, field):
  config = base.get_config("ddpm")
  for key, value in overrides.items():
    _set(config, key, value)
  with pytest.raises(ConfigError) as info:
    config_check.validate(config)
  assert str(info.value).startswith(field) and "\n" not in str(info.value)


def test_channels_first_npz_gets_a_hint(tmp_path):
  from diffusion import make_source  # pylint: disable=import-outside-toplevel
  path = tmp_path / "cf.npz"
  np.savez(path, images=np.zeros((4, 3, 8, 8), np.uint8))
  with pytest.raises(ConfigError, match="channels-first"):
    make_source({"dataset": "npz", "data_dir": str(path), "image_size": 8, "num_channels": 3})


# ---- every command-line fault: one line, exit 2, nothing left behind ---------------------------


@pytest.mark.parametrize("args, start", [
    (["--config=configs/nope.py"], "error: --config=configs/nope.py: no such file"),
    (["--config.training.num_samples=0"], "error: training.num_samples=0 is not valid"),
    (["--config.optim.lr=inf"], "error: optim.lr=inf is not valid"),
])
def test_train_cli_faults_are_one_line(tmp_path, args, start):
  workdir = tmp_path / "run"
  if not args[0].startswith("--config="):
    args = [TOY[0]] + args
  res = run_cli("train.py", *args, f"--workdir={workdir}", "--progress=false")
  assert res.returncode == 2 and error_line(res.stderr).startswith(start), res.stderr[-2000:]
  assert "Traceback" not in res.stderr and not workdir.exists()


def test_broken_config_file_names_file_and_line(tmp_path):
  bad = tmp_path / "broken.py"
  bad.write_text("def get_config():\n  return (\n")
  res = run_cli("train.py", f"--config={bad}", f"--workdir={tmp_path / 'run'}")
  assert res.returncode == 2
  assert error_line(res.stderr).startswith(f"error: --config={bad}: syntax error at line ")
  raising = tmp_path / "raising.py"
  raising.write_text("def get_config():\n  return undefined_name\n")
  res = run_cli("train.py", f"--config={raising}", f"--workdir={tmp_path / 'run'}")
  assert res.returncode == 2 and "get_config() failed: NameError" in error_line(res.stderr)
  assert "Traceback" not in res.stderr and not (tmp_path / "run").exists()


def test_workdir_that_is_a_file(tmp_path):
  path = tmp_path / "a_file"
  path.write_text("not a folder")
  res = run_cli("train.py", *TOY, f"--workdir={path}")
  assert res.returncode == 2
  assert error_line(res.stderr) == (f"error: --workdir={path} is a file, not a folder; give a "
                                    "folder (it is created if needed).")
  assert path.read_text() == "not a folder"


@pytest.mark.slow
def test_ctrl_c_before_the_first_step_leaves_nothing(tmp_path):
  workdir = tmp_path / "run"
  proc = subprocess.Popen(
      [sys.executable, "train.py", "--config=configs/ddpm/digits.py", "--progress=false",
       f"--workdir={workdir}"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True)
  deadline = time.time() + 120
  while time.time() < deadline and not (workdir / "config.json").exists():
    time.sleep(0.02)
  assert (workdir / "config.json").exists()
  proc.send_signal(signal.SIGINT)                    # during restore / the first compile
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 2, err[-2000:]
  assert error_line(err) == ("error: interrupted (Ctrl-C) before the first step; nothing "
                             "was saved.")
  assert "Traceback" not in err and not workdir.exists()


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("toy") / "run")
  train(toy_config(), workdir, progress=False)
  return workdir


@pytest.mark.parametrize("flag, start", [
    ("--batch_size=-4", "error: --batch_size=-4 is not valid"),
    ("--checkpoint_step=-5", "error: --checkpoint_step=-5 is not valid"),
    ("--num_samples=-1", "error: --num_samples=-1 is not valid"),
    ("--num_samples=0", "error: --num_samples=0 draws nothing; give --bpd"),
    ("--steps=-1", "error: --steps=-1 is not valid"),
    ("--seed=-1", "error: --seed=-1 is not valid"),
    ("--checkpoint_step=7", "error: --checkpoint_step=7 is not in"),
])
def test_sample_cli_numeric_flags(toy_run, tmp_path, flag, start):
  workdir = toy_run
  out = tmp_path / "out"
  res = run_cli("sample.py", f"--workdir={workdir}", flag, f"--output={out}", "--progress=false")
  assert res.returncode == 2 and error_line(res.stderr).startswith(start), res.stderr[-2000:]
  assert "Traceback" not in res.stderr and not out.exists()


def test_nan_in_a_fresh_run_does_not_claim_a_checkpoint(tmp_path):
  from diffusion.train.loop import NonFiniteLossError  # pylint: disable=import-outside-toplevel
  bad = toy_config(**{"optim.lr": 1e38, "optim.warmup_steps": 0})
  with pytest.raises(NonFiniteLossError, match="no checkpoint had been written yet"):
    train(bad, str(tmp_path / "run"), progress=False)


def test_make_workdir_when_another_process_creates_it_first(tmp_path, monkeypatch):
  """The race of two train.py on one new workdir: the loser's makedirs finds the folder the
  winner made; it must go on to the lock (one 'in use' line), never delete that folder."""
  from diffusion.io import workdir as wd  # pylint: disable=import-outside-toplevel
  target = tmp_path / "run"
  real = os.makedirs

  def racing(path, *a, **k):
    real(path)
    (target / "metrics.jsonl").write_text("{}\n")   # the winner's run
    raise FileExistsError(path)

  monkeypatch.setattr(wd.os, "makedirs", racing)
  assert wd.make_workdir(str(target)) is False
  assert (target / "metrics.jsonl").exists()

"""Issue 24: nothing a user does by accident becomes a wrong result or a damaged run."""

import dataclasses
import json
import os
import signal

import pytest

from diffusion.errors import ConfigError
from diffusion.io import metric_writers
from diffusion.reproduce import runner
from diffusion.train.loop import Interrupted, train
from tests.test_training import toy_config


def test_signal_in_training_saves_and_reports_interrupted(tmp_path, monkeypatch):
  original = metric_writers.MetricWriter.write_scalars

  def write_then_signal(self, step, scalars):
    original(self, step, scalars)
    if step == 2:
      os.kill(os.getpid(), signal.SIGINT)

  monkeypatch.setattr(metric_writers.MetricWriter, "write_scalars", write_then_signal)
  final = train(toy_config(), str(tmp_path / "w"), progress=False)
  assert final["interrupted"] == "SIGINT" and final["step"] == 2
  assert os.path.isdir(tmp_path / "w" / "checkpoints" / "2")


def test_signal_during_samples_saves_that_step_and_skips_the_rest(tmp_path, monkeypatch):
  from diffusion.train import loop
  calls = []

  def samples_then_signal(m, prefix, sample_fn, ema_params, step, chain_bar):
    calls.append(step)
    os.kill(os.getpid(), signal.SIGTERM)

  monkeypatch.setattr(loop, "_write_grid", samples_then_signal)
  config = toy_config(**{"training.sample_every": 2, "training.checkpoint_every": 8})
  final = train(config, str(tmp_path / "w"), progress=False)
  assert final["interrupted"] == "SIGTERM" and final["step"] == 2 and calls == [2]
  assert os.path.isdir(tmp_path / "w" / "checkpoints" / "2")


def test_signal_at_the_last_step_still_reports_interrupted(tmp_path, monkeypatch):
  original = metric_writers.MetricWriter.write_scalars

  def write_then_signal(self, step, scalars):
    original(self, step, scalars)
    if step == 8:
      os.kill(os.getpid(), signal.SIGINT)

  monkeypatch.setattr(metric_writers.MetricWriter, "write_scalars", write_then_signal)
  final = train(toy_config(), str(tmp_path / "w"), progress=False)
  assert final["interrupted"] == "SIGINT" and final["step"] == 8
  assert os.path.isdir(tmp_path / "w" / "checkpoints" / "8")


def test_a_signal_taken_before_training_stops_it_after_one_call(tmp_path, monkeypatch):
  """A reproduction's handler took a signal (its KeyboardInterrupt swallowed by a library
  callback) while the data loaded: training stops after its first call, saved."""
  from diffusion.train import loop
  monkeypatch.setattr(loop, "PENDING_STOP", ["SIGTERM"])
  final = train(toy_config(), str(tmp_path / "w"), progress=False)
  assert final["interrupted"] == "SIGTERM" and final["step"] < 8
  assert os.path.isdir(tmp_path / "w" / "checkpoints" / str(final["step"]))


def _fake_experiment(monkeypatch, behaviour):
  b = runner.get("ncsn_fig3_learned")
  monkeypatch.setitem(runner.BASELINES, b.name, dataclasses.replace(b, experiment=behaviour))


@pytest.mark.parametrize("stop", ["training", "evaluation"])
def test_interrupted_reproduction_writes_no_result(tmp_path, monkeypatch, capsys, stop):
  def experiment(baseline, budget, workdir, seed):
    if stop == "training":
      raise Interrupted("SIGINT stopped training at step 2 (checkpoint saved)")
    raise KeyboardInterrupt   # Ctrl-C during an evaluation
  _fake_experiment(monkeypatch, experiment)
  w = str(tmp_path / "w")
  assert runner.main("ncsn_fig3_learned", workdir=w) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: ") and "resume with: python -m " \
      f"diffusion.reproduce ncsn_fig3_learned --tier=cpu --workdir={w}" in err[0]
  assert not os.path.exists(os.path.join(w, "results.json"))


def test_interrupt_outside_the_experiment_is_one_line(tmp_path, monkeypatch, capsys):
  from diffusion.reproduce.schema import Outcome
  _fake_experiment(monkeypatch, lambda *args: Outcome({}))

  def interrupted():
    raise KeyboardInterrupt   # Ctrl-C while the result is being put together

  monkeypatch.setattr(runner, "commit", interrupted)
  w = str(tmp_path / "w")
  assert runner.main("ncsn_fig3_learned", workdir=w) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err == ["error: interrupted; run the same command again to resume: python -m "
                 f"diffusion.reproduce ncsn_fig3_learned --tier=cpu --workdir={w}"]
  assert not os.path.exists(os.path.join(w, "results.json"))


@pytest.mark.slow
@pytest.mark.parametrize("sig, phase", [(signal.SIGTERM, "model:"), (signal.SIGINT, "done:")])
def test_signal_in_training_or_evaluation_of_a_reproduction_is_one_line(tmp_path, sig, phase):
  """A real reproduction signalled when training starts ("model:") or while it evaluates
  ("done:"): one line, exit 2, no result."""
  import subprocess
  import sys
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.Popen([sys.executable, "-m", "diffusion.reproduce", "ncsn_fig3_learned",
                           f"--workdir={tmp_path / 'w'}"], cwd=repo, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  for line in proc.stdout:
    if line.startswith(phase):
      proc.send_signal(sig)
      break
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 2 and "Traceback" not in err, err[-2000:]
  assert err.strip().splitlines()[-1].startswith("error: ")
  assert "resume with: python -m diffusion.reproduce ncsn_fig3_learned" in err
  assert not (tmp_path / "w" / "results.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_train_py_acts_on_a_signal_promptly_in_any_phase(tmp_path, sig):
  """SIGTERM as soon as train.py reports its model (before or during compilation): one
  line or a saved stop, within a minute, never a traceback or a lost signal."""
  import subprocess
  import sys
  import time
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.Popen([sys.executable, "train.py", "--config=configs/ddpm/toy_mixture.py",
                           "--progress=false", f"--workdir={tmp_path / 'w'}",
                           "--config.training.num_train_steps=1000000"], cwd=repo, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  for line in proc.stdout:
    if line.startswith("model:"):
      proc.send_signal(sig)
      signalled = time.time()
      break
  out, err = proc.communicate(timeout=120)
  assert time.time() - signalled < 60
  assert "Traceback" not in err, err[-2000:]
  if proc.returncode == 2:    # before the first step: nothing saved, the new workdir removed
    assert err.strip().splitlines()[-1].startswith("error: interrupted")
    assert not (tmp_path / "w").exists()
  else:                       # during the first call: saved, then stopped
    assert proc.returncode == 0 and "saved checkpoint" in out


def test_refused_resume_changes_nothing(tmp_path):
  w = str(tmp_path / "w")
  train(toy_config(), w, progress=False)
  before = {n: open(os.path.join(w, n), "rb").read() for n in os.listdir(w)
            if os.path.isfile(os.path.join(w, n))}
  with pytest.raises(ConfigError):
    train(toy_config(**{"model.hidden_dims": (64, 64)}), w, progress=False)
  after = {n: open(os.path.join(w, n), "rb").read() for n in os.listdir(w)
           if os.path.isfile(os.path.join(w, n)) and n != ".lock"}
  before.pop(".lock", None)
  assert after == before


def test_reproduce_refuses_another_baselines_workdir(tmp_path, capsys):
  w = tmp_path / "w"
  w.mkdir()
  (w / "results.json").write_text(json.dumps({"baseline": "ncsn_fig3_learned"}))
  assert runner.main("dpm_swiss_roll", workdir=str(w)) == 2
  assert "holds the reproduction of ncsn_fig3_learned" in capsys.readouterr().err
  assert os.listdir(w) == ["results.json"]


def test_reproduce_refuses_the_workdir_of_another_interrupted_baseline(tmp_path, monkeypatch,
                                                                      capsys):
  def experiment(baseline, budget, workdir, seed):
    raise Interrupted("SIGINT stopped training at step 2 (checkpoint saved)")
  _fake_experiment(monkeypatch, experiment)
  w = tmp_path / "w"
  assert runner.main("ncsn_fig3_learned", workdir=str(w)) == 2
  files = sorted(os.listdir(w))
  assert files == [".lock", "reproduce.json"]   # no results.json, but the owner is named
  capsys.readouterr()
  assert runner.main("dpm_swiss_roll", workdir=str(w)) == 2
  assert "holds the reproduction of ncsn_fig3_learned" in capsys.readouterr().err
  assert sorted(os.listdir(w)) == files


def test_gpu_tier_on_a_cpu_is_refused(tmp_path, capsys):
  w = tmp_path / "w"
  assert runner.main("ddpm_mnist", tier="gpu", workdir=str(w)) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "--force_tier" in err[0] and "only the CPU" in err[0]
  assert not w.exists()


# ---- sweeps ----------------------------------------------------------------------------------

TOY_FILE = "configs/ddpm/toy_mixture.py"


def _toy_sweep_config():
  from configs.ddpm import toy_mixture
  config = toy_mixture.get_config()
  config.training.num_train_steps = 4
  config.training.log_every = 2
  config.training.checkpoint_every = 4
  return config


def test_done_point_whose_folder_is_gone_is_pending_again(tmp_path):
  from diffusion import sweeps
  import shutil
  grid = "optim.lr=1e-3,2e-3"
  sweeps.run_sweep(_toy_sweep_config(), TOY_FILE, grid, str(tmp_path))
  points = sweeps.read_ledger(str(tmp_path))["points"]
  assert [p["status"] for p in points] == ["done", "done"]
  shutil.rmtree(points[0]["workdir"])
  with open(os.path.join(points[1]["workdir"], "metrics.jsonl"), "w") as f:
    f.write("{not json\n")
  text = sweeps.summarize(str(tmp_path), plots=False)
  assert "| pending |" in text and "its folder" in text and "unreadable" in text
  assert "skipped 1 unreadable line(s)" in text
  sweeps.run_sweep(_toy_sweep_config(), TOY_FILE, grid, str(tmp_path))
  points = sweeps.read_ledger(str(tmp_path))["points"]
  assert points[0]["status"] == "done" and points[0]["final"]["step"] == 4
  assert os.path.isdir(points[0]["workdir"])


@pytest.mark.parametrize("how", ["before_the_first_step", "at_the_last_step"])
def test_a_signal_stops_the_sweep_not_just_its_point(tmp_path, monkeypatch, how):
  """Ctrl-C before a point's first step left the point failed and trained the next one;
  a signal at a point's last step went unnoticed."""
  from diffusion import sweeps
  from diffusion.sweeps import runner as sweep_runner
  calls = []

  def fake_train(config, workdir, progress=True):
    calls.append(workdir)
    if how == "before_the_first_step":
      raise Interrupted("interrupted (Ctrl-C) before the first step; nothing was saved.")
    return {"step": config.training.num_train_steps, "loss": 1.0, "interrupted": "SIGINT"}

  monkeypatch.setattr(sweep_runner, "train", fake_train)
  sweeps.run_sweep(_toy_sweep_config(), TOY_FILE, "optim.lr=1e-3,2e-3", str(tmp_path))
  statuses = [p["status"] for p in sweeps.read_ledger(str(tmp_path))["points"]]
  assert len(calls) == 1
  assert statuses == (["running", "pending"] if how == "before_the_first_step"
                      else ["done", "pending"])


def test_ledger_of_the_wrong_shape_is_one_line(tmp_path, capsys):
  from diffusion import sweeps
  from diffusion.sweeps.__main__ import main as sweeps_command
  (tmp_path / "sweep.json").write_text('{"config": 3, "points": 5}')
  with pytest.raises(ConfigError, match="sweep.json is JSON but not a sweep ledger"):
    sweeps.run_sweep(_toy_sweep_config(), TOY_FILE, "optim.lr=1e-3", str(tmp_path))
  assert sweeps_command(["python -m diffusion.sweeps", "summarize", str(tmp_path)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "not a sweep ledger" in err[0] and "move it away" in err[0]


@pytest.mark.parametrize("grid, message", [
    ("optim.lr=", "empty key or value"), ("optim.lr=1e-3,,2e-3", "empty key or value"),
    ("optim.lr=1e-3,nan", "optim.lr=nan is not a finite number")])
def test_grid_empty_and_nan_values_are_refused(grid, message):
  from diffusion.sweeps import grid as grids
  with pytest.raises(ConfigError, match=message):
    grids.parse_grid(grid)


@pytest.mark.slow
def test_sweep_with_a_failed_point_exits_2_naming_it(tmp_path):
  import subprocess
  import sys
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  res = subprocess.run(
      [sys.executable, "train.py", f"--config={TOY_FILE}", "--progress=false",
       f"--workdir={tmp_path}", "--sweep=optim.lr=1e-3,1e38;optim.warmup_steps=0",
       "--config.training.num_train_steps=4", "--config.training.log_every=2"],
      cwd=repo, capture_output=True, text=True, timeout=600)
  assert res.returncode == 2, res.stderr[-2000:]
  assert res.stderr.strip().splitlines()[-1].startswith(
      "error: 1 sweep point(s) failed: lr=1e+38_warmup_steps=0")
  assert "Traceback" not in res.stderr


def test_analytic_model_is_a_run_at_step_0(tmp_path, capsys):
  import diffusion
  import numpy as np
  w = str(tmp_path / "w")
  final = train(toy_config(**{"model.name": "analytic"}), w, progress=False)
  assert final == {"step": 0}
  assert "nothing to train" in capsys.readouterr().out
  assert os.path.isfile(os.path.join(w, "config.json"))
  run = diffusion.load(w)
  x = run.sample(8, seed=0)
  assert np.asarray(x).shape == (8, 2) and np.isfinite(np.asarray(x)).all()
  assert train(toy_config(**{"model.name": "analytic"}), w, progress=False) == {"step": 0}


@pytest.mark.parametrize("name", ["x" * 300, "/".join(["d" * 200] * 30)])
def test_workdir_names_the_system_refuses_are_one_line(tmp_path, name):
  with pytest.raises(ConfigError, match="cannot be created"):
    train(toy_config(), str(tmp_path / "sub" / name), progress=False)
  assert os.listdir(tmp_path) == []


def test_sweep_and_reproduction_dirs_the_system_refuses_are_one_line(tmp_path, capsys):
  from diffusion import sweeps
  too_long = str(tmp_path / "sub" / ("x" * 300))
  with pytest.raises(ConfigError, match="cannot be created"):
    sweeps.run_sweep(_toy_sweep_config(), TOY_FILE, "optim.lr=1e-3", too_long)
  assert runner.main("ncsn_fig3_exact", workdir=too_long) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "cannot be created" in err[0]
  assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only folders")
def test_read_only_workdir_is_one_line(tmp_path):
  w = tmp_path / "w"
  w.mkdir()
  w.chmod(0o500)
  try:
    with pytest.raises(ConfigError, match="cannot write"):
      train(toy_config(), str(w), progress=False)
  finally:
    w.chmod(0o700)
  assert os.listdir(w) == []


def test_damaged_array_record_names_the_dataset_and_the_prepare_command():
  from diffusion.data import tfds_sources

  class Truncated:
    def __getitems__(self, indices):
      raise RuntimeError("Invalid Riegeli stream: truncated file")

  with pytest.raises(ConfigError, match=r"mnist.*damaged.*python -m diffusion.data prepare "
                                        "mnist"):
    tfds_sources.read_records(Truncated(), [0, 1], "mnist")


def test_prepare_leftovers_are_removed(tmp_path):
  from diffusion.data import tfds_sources
  (tmp_path / "tmp_downloads_abc").mkdir()
  (tmp_path / "mnist" / "incomplete.XYZ").mkdir(parents=True)
  (tmp_path / "mnist" / "3.0.1").mkdir()
  tfds_sources._remove_leftovers(tmp_path, tmp_path / "mnist")  # pylint: disable=protected-access
  assert sorted(os.listdir(tmp_path)) == ["mnist"]
  assert os.listdir(tmp_path / "mnist") == ["3.0.1"]


def test_reader_racing_a_writer_that_keeps_one_checkpoint_finds_the_new_one(tmp_path,
                                                                            monkeypatch):
  """sample.py lists checkpoint N, the run saves N+k and deletes N (keep_checkpoints=1)
  before the read: the reader looks again instead of saying "train first"."""
  from diffusion import families
  from diffusion.io import checkpoints, workdir as runs
  w = str(tmp_path / "w")
  config = toy_config(**{"training.keep_checkpoints": 1})
  train(config, w, progress=False)
  listed = iter([[4]])   # the first listing: a step deleted since
  real = checkpoints.Checkpointer.steps
  monkeypatch.setattr(checkpoints.Checkpointer, "steps",
                      lambda self: next(listed, None) or real(self))
  _, step = runs.restore_ema_params(w, families.make_family(config))
  assert step == 8

"""Issue 24: nothing a user does by accident becomes a wrong result or a damaged run."""

import json
import os
import signal

import pytest

from diffusion.errors import ConfigError
from diffusion.io import metric_writers
from diffusion.reproduce import runner
from diffusion.train.loop import Interrupted, train


def toy_config(**overrides):
  """configs/ddpm/toy_mixture.py shortened to 8 steps."""
  from configs.ddpm import toy_mixture
  config = toy_mixture.get_config()
  config.training.num_train_steps = 8
  config.training.log_every = 2
  config.training.checkpoint_every = 4
  for key, value in overrides.items():
    section, field = key.split(".")
    config[section][field] = value
  return config


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


def _fake_experiment(monkeypatch, behaviour):
  b = runner.get("ncsn_fig3_learned")
  monkeypatch.setitem(runner.EXPERIMENTS, b.experiment, behaviour)


@pytest.mark.parametrize("stop", ["training", "evaluation"])
def test_interrupted_reproduction_writes_no_result(tmp_path, monkeypatch, capsys, stop):
  def experiment(baseline, budget, workdir, seed):
    if stop == "training":
      raise Interrupted("SIGINT stopped training at step 2 (checkpoint saved)")
    raise KeyboardInterrupt   # Ctrl-C during an evaluation
  _fake_experiment(monkeypatch, experiment)
  w = str(tmp_path / "w")
  assert runner.main(["ncsn_fig3_learned", f"--workdir={w}"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: ") and "resume with: python -m " \
      f"diffusion.reproduce ncsn_fig3_learned --tier=cpu --workdir={w}" in err[0]
  assert not os.path.exists(os.path.join(w, "results.json"))


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
  assert runner.main(["dpm_swiss_roll", f"--workdir={w}"]) == 2
  assert "holds the reproduction of ncsn_fig3_learned" in capsys.readouterr().err
  assert os.listdir(w) == ["results.json"]


def test_gpu_tier_on_a_cpu_is_refused(tmp_path, capsys):
  w = tmp_path / "w"
  assert runner.main(["ddpm_mnist", "--tier=gpu", f"--workdir={w}"]) == 2
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


def test_ledger_of_the_wrong_shape_is_one_line(tmp_path, capsys):
  from diffusion import sweeps
  from diffusion.sweeps import runner as sweep_runner
  (tmp_path / "sweep.json").write_text('{"config": 3, "points": 5}')
  with pytest.raises(ConfigError, match="sweep.json is JSON but not a sweep ledger"):
    sweeps.run_sweep(_toy_sweep_config(), TOY_FILE, "optim.lr=1e-3", str(tmp_path))
  assert sweep_runner.main_summarize(["summarize", str(tmp_path)]) == 2
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

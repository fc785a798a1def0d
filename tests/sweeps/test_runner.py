"""diffusion/sweeps/runner.py: every point validated before anything trains, a done point
whose folder is gone, a signal that stops the sweep, folders the system refuses."""

import os

import pytest

from diffusion import sweeps
from diffusion.errors import ConfigError
from diffusion.reproduce import runner
from diffusion.train.loop import Interrupted

from tests.sweeps.test_grid import TOY_FILE, toy_file_config


def _toy_sweep_config():
  from configs.ddpm import toy_mixture
  config = toy_mixture.get_config()
  config.training.num_train_steps = 4
  config.training.log_every = 2
  config.training.checkpoint_every = 4
  return config


def test_every_point_is_validated_before_anything_trains(tmp_path):
  with pytest.raises(ConfigError, match=r"^sweep point lr=-0.001: optim.lr=-0.001 is not valid"):
    sweeps.run_sweep(toy_file_config(), TOY_FILE, "optim.lr=1e-3,-1e-3", str(tmp_path))
  assert not os.listdir(tmp_path)
  with pytest.raises(ConfigError, match="has no field 'optim.lrr'.*did you mean 'lr'"):
    sweeps.run_sweep(toy_file_config(), TOY_FILE, "optim.lrr=1e-3", str(tmp_path))
  with pytest.raises(ConfigError, match="defines no sweep_lr_seeds.*did you mean 'lr_seed'"):
    sweeps.run_sweep(toy_file_config(), TOY_FILE, "lr_seeds", str(tmp_path))


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
  calls = []

  def fake_train(config, workdir, progress=True):
    calls.append(workdir)
    if how == "before_the_first_step":
      raise Interrupted("interrupted (Ctrl-C) before the first step; nothing was saved.")
    return {"step": config.training.num_train_steps, "loss": 1.0, "interrupted": "SIGINT"}

  monkeypatch.setattr(sweeps.runner, "train", fake_train)
  sweeps.run_sweep(_toy_sweep_config(), TOY_FILE, "optim.lr=1e-3,2e-3", str(tmp_path))
  statuses = [p["status"] for p in sweeps.read_ledger(str(tmp_path))["points"]]
  assert len(calls) == 1
  assert statuses == (["running", "pending"] if how == "before_the_first_step"
                      else ["done", "pending"])


def test_sweep_and_reproduction_dirs_the_system_refuses_are_one_line(tmp_path, capsys):
  from diffusion import sweeps
  too_long = str(tmp_path / "sub" / ("x" * 300))
  with pytest.raises(ConfigError, match="cannot be created"):
    sweeps.run_sweep(_toy_sweep_config(), TOY_FILE, "optim.lr=1e-3", too_long)
  assert runner.main("ncsn_fig3_exact", workdir=too_long) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "cannot be created" in err[0]
  assert os.listdir(tmp_path) == []

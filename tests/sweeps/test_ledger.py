"""diffusion/sweeps/ledger.py: point states, skip and retry, changed definitions, and a
sweep.json of the wrong shape."""

import os

import pytest

from diffusion import sweeps
from diffusion.errors import ConfigError

from tests.sweeps.test_grid import TOY_FILE, toy_file_config
from tests.sweeps.test_runner import _toy_sweep_config


def test_ledger_states_skip_retry_and_changed_definitions(tmp_path):
  cfg = toy_file_config(**{"training.num_train_steps": 20, "training.log_every": 10,
                           "training.checkpoint_every": 10})
  grid = "optim.lr=1e-3,1e38;optim.warmup_steps=0"             # the second point diverges
  sweeps.run_sweep(cfg, TOY_FILE, grid, str(tmp_path))
  ledger = sweeps.read_ledger(str(tmp_path))
  status = {p["name"]: (p["status"], p["error"]) for p in ledger["points"]}
  assert status["lr=0.001_warmup_steps=0"] == ("done", None)
  assert status["lr=1e+38_warmup_steps=0"][0] == "failed"
  assert status["lr=1e+38_warmup_steps=0"][1].startswith("NonFiniteLossError: loss became NaN")
  done = ledger["points"][0]
  assert done["final"]["step"] == 20 and done["workdir"] == str(tmp_path / done["name"])
  assert (tmp_path / "summary.md").exists() and (tmp_path / "summary.csv").exists()
  assert (tmp_path / "loss_curves.png").exists()
  mtime = os.path.getmtime(tmp_path / done["name"] / "metrics.jsonl")
  sweeps.run_sweep(cfg, TOY_FILE, grid, str(tmp_path))            # skips both
  assert os.path.getmtime(tmp_path / done["name"] / "metrics.jsonl") == mtime
  assert sweeps.read_ledger(str(tmp_path))["points"][1]["status"] == "failed"
  sweeps.run_sweep(cfg, TOY_FILE, grid, str(tmp_path), retry_failed=True)   # retried, fails
  assert sweeps.read_ledger(str(tmp_path))["points"][1]["status"] == "failed"
  # A changed definition is refused with what changed; added points are appended.
  with pytest.raises(ConfigError, match=r"point 'lr=1e\+38_warmup_steps=0' is gone"):
    sweeps.run_sweep(cfg, TOY_FILE, "optim.lr=1e-3;optim.warmup_steps=0", str(tmp_path))
  with pytest.raises(ConfigError, match="overrides were"):
    sweeps.run_sweep(cfg, TOY_FILE, grid, str(tmp_path), common_overrides={"optim.eps": 1e-6})
  sweeps.run_sweep(cfg, TOY_FILE, "optim.lr=1e-3,1e38,2e-3;optim.warmup_steps=0",
                   str(tmp_path))
  points = sweeps.read_ledger(str(tmp_path))["points"]
  assert [p["status"] for p in points] == ["done", "failed", "done"]


def test_ledger_of_the_wrong_shape_is_one_line(tmp_path, capsys):
  from diffusion import sweeps
  from diffusion.sweeps.__main__ import main
  (tmp_path / "sweep.json").write_text('{"config": 3, "points": 5}')
  with pytest.raises(ConfigError, match="sweep.json is JSON but not a sweep ledger"):
    sweeps.run_sweep(_toy_sweep_config(), TOY_FILE, "optim.lr=1e-3", str(tmp_path))
  assert main(["python -m diffusion.sweeps", "summarize", str(tmp_path)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "not a sweep ledger" in err[0] and "move it away" in err[0]

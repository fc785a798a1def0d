"""python -m diffusion.sweeps summarize DIR (and ema DIR: tests/sweeps/test_ema.py), and
its one-line errors."""

import json

from tests.conftest import stderr_tail
from tests.test_cli import command, one_error


def test_sweeps_command_line(tmp_path):
  points = [{"name": "lr=0.001", "overrides": {"optim.lr": 0.001}, "status": "pending",
             "error": None, "workdir": str(tmp_path / "lr=0.001"), "final": {}, "best": {}}]
  (tmp_path / "sweep.json").write_text(json.dumps(
      {"config": "configs/ddpm/toy_mixture.py", "sweep": "optim.lr=1e-3",
       "common_overrides": {}, "points": points}))
  res = command("diffusion.sweeps", "summarize", str(tmp_path))
  assert res.returncode == 0 and "| lr=0.001 | pending |" in res.stdout, \
      stderr_tail(res.stderr, 2000)
  assert (tmp_path / "summary.md").exists()
  for args in ((), ("summarise", str(tmp_path))):
    line = one_error(command("diffusion.sweeps", *args))
    assert "usage: python -m diffusion.sweeps summarize DIR | " in line
    assert line.endswith("python -m diffusion.sweeps ema DIR --std_rel=0.01,0.02,0.05,0.1 "
                         "--eval=classifier_fid")
  (tmp_path / "sweep.json").write_text("[]")
  assert "not a sweep ledger" in one_error(command("diffusion.sweeps", "summarize",
                                                   str(tmp_path)))

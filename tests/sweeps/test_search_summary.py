"""diffusion/sweeps/search_summary.py: a search's progress and a folder of sweeps
compared."""

import numpy as np
import pytest

from diffusion import sweeps

pytest.importorskip("optuna")
# pylint: disable=wrong-import-position
from diffusion.sweeps import search_summary  # noqa: E402

from tests.sweeps.test_grid import TOY_FILE, toy_file_config
from tests.sweeps.test_trials import fake_train, run, STEPS


def test_progress_and_a_folder_of_sweeps_compared(tmp_path):
  ledger = run(tmp_path / "both", name="search", trials=4, searcher="random")
  curve = search_summary.progress(sweeps.read_ledger(str(tmp_path / "both" / "search")),
                                  "eval/fake", "min")
  metrics = [p["metric"] for p in ledger.points]
  assert [s for s, _ in curve] == [100, 200, 300, 400]
  assert [v for _, v in curve] == pytest.approx(list(np.minimum.accumulate(metrics)))
  grid_dir = tmp_path / "both" / "grid"
  points = sweeps.parse_grid("optim.lr=1e-3,3e-3;training.ema_decay=0.9")
  for p in points:   # a grid of the same stand-in runs
    cfg = sweeps.apply_overrides(toy_file_config(**STEPS), p)
    fake_train(cfg, str(grid_dir / sweeps.point_names([p])[0]), on_log=lambda s, r: False)
  ledger_grid = sweeps.Ledger.open(str(grid_dir), TOY_FILE, "g", {}, sweeps.point_names(points),
                                   points)
  for p in ledger_grid.points:
    ledger_grid.set(p["name"], "done", final={"step": 100})
  text = sweeps.summarize(str(tmp_path / "both"))
  assert "| grid | grid | 200 |" in text and "| search | search | 400 |" in text
  assert (tmp_path / "both" / "search_progress.png").exists()
  assert (tmp_path / "both" / "comparison.md").exists()

"""diffusion/sweeps/seeds.py: Student-t intervals, the best configurations repeated over
seeds, and a grid over seeds grouped by configuration."""

import math

import numpy as np
import pytest

from diffusion import sweeps
from diffusion.errors import ConfigError
from diffusion.sweeps import seeds, summary

pytest.importorskip("optuna")
# pylint: disable=wrong-import-position
from diffusion.sweeps import search  # noqa: E402

from tests.sweeps.test_grid import TOY_FILE, toy_file_config
from tests.sweeps.test_trials import fake_metric, run, STEPS


def test_student_t_interval_against_the_table():
  # t_{0.975, 4} = 2.776 and t_{0.975, 1} = 12.706 (any table of Student's t).
  values = [1.0, 2.0, 3.0, 4.0, 5.0]
  mean, half, n = seeds.t_interval(values)
  assert (mean, n) == (3.0, 5)
  assert half == pytest.approx(2.7764451 * np.std(values, ddof=1) / math.sqrt(5), rel=1e-6)
  assert seeds.t_interval([1.0, 3.0])[1] == pytest.approx(12.7062047, rel=1e-6)   # s/√n = 1
  assert math.isnan(seeds.t_interval([2.0])[1]) and seeds.t_interval([])[2] == 0
  assert seeds.format_interval(0.123456, 0.0123) == "0.12346 ± 0.012"


def test_the_best_configurations_are_repeated_over_seeds(tmp_path):
  ledger = run(tmp_path, trials=4, searcher="random", seeds=3, seeds_top=2)
  trials_ = [p for p in ledger.points if p["trial"] is not None]
  replicas = [p for p in ledger.points if p["trial"] is None]
  best_two = sorted(trials_, key=lambda p: p["metric"])[:2]
  assert sorted(p["config_id"] for p in replicas) == sorted([b["name"] for b in best_two] * 2)
  assert sorted(p["seed"] for p in replicas) == [1, 1, 2, 2]
  assert all(p["status"] == "done" for p in replicas)
  for p in replicas:
    assert p["name"] == f"{p['config_id']}_seed={p['seed']}"
    assert p["overrides"]["training.seed"] == p["seed"]
  text = (tmp_path / "s" / "summary.md").read_text()
  assert "Configurations over seeds" in text
  b = best_two[0]
  values = [fake_metric(b["overrides"]["optim.lr"], b["overrides"]["training.ema_decay"], s, 100)
            for s in (0, 1, 2)]
  mean, half, _ = seeds.t_interval(values)
  assert f"{seeds.format_interval(mean, half)} | 3 | 0, 1, 2 |" in text
  # The study holds the trials only: replicas are not the searcher's draws.
  study = search.open_study(str(tmp_path / "s"), searcher="random", seed=0, trials=4, mode="min")
  assert len(study.trials) == 4


def test_a_grid_over_seeds_is_grouped_by_configuration(tmp_path):
  from tests.sweeps.test_summary import _fake_sweep  # pylint: disable=import-outside-toplevel
  points = sweeps.product(sweeps.sweep("optim.lr", [1e-3, 2e-3]),
                          sweeps.sweep("training.seed", [0, 1, 2]))
  _fake_sweep(tmp_path, toy_file_config(), points)
  text = sweeps.summarize(str(tmp_path), plots=False)
  assert "Configurations over training seeds" in text and "ranked by the mean of best eval/fid" \
      in text
  rows = [line for line in text.splitlines() if line.startswith("| 1 |") or
          line.startswith("| 2 |")]
  # _fake_sweep gives point i eval/fid 50 - i: lr=2e-3 (points 3..5) is better (lower).
  assert rows[0].startswith("| 1 | optim.lr=0.002 |")
  assert rows[1].startswith("| 2 | optim.lr=0.001 |")
  mean, half, _ = seeds.t_interval([47.0, 46.0, 45.0])
  assert seeds.format_interval(mean, half) in rows[0] and rows[0].endswith("| 3 | 0, 1, 2 |")
  assert summary.ranking_metric([{"best eval/fid": 1.0, "final_loss": 2.0}]) == (
      "best eval/fid", "min")
  # --seeds on a grid: every point K times, and not with a seed axis as well.
  cfg = toy_file_config(**STEPS)
  prepared = sweeps.prepare(cfg, TOY_FILE, "optim.lr=1e-3,2e-3", seeds=2)
  assert [p["name"] for p in prepared] == ["lr=0.001_seed=0", "lr=0.001_seed=1",
                                           "lr=0.002_seed=0", "lr=0.002_seed=1"]
  with pytest.raises(ConfigError, match="already sweeps training.seed"):
    sweeps.prepare(cfg, TOY_FILE, "training.seed=0,1", seeds=2)

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

from tests.conftest import stderr_tail
from tests.sweeps.test_grid import TOY_FILE, toy_file_config
from tests.sweeps.test_trials import SPACE, STEPS, fake_metric, run


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


# ---- through train.py -----------------------------------------------------------------------

T_975 = {1: 12.7062047, 2: 4.3026527}   # Student's t, 97.5% quantile, by degrees of freedom


def _interval(values):
  """Mean and 95% half-width from the t table (float64 numpy)."""
  x = np.asarray(values, np.float64)
  return x.mean(), T_975[len(x) - 1] * x.std(ddof=1) / math.sqrt(len(x))


def _cells(text, title):
  """The rows of the table under the line starting ``title`` in summary.md."""
  lines = text.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith(title))
  table = []
  for line in lines[start + 4:]:
    if not line.startswith("|"):
      break
    table.append([c.strip() for c in line.strip("|").split("|")])
  return table


def _mean_and_half(cell):
  mean, half = cell.split(" ± ")
  return float(mean), float(half)


def _train(*args):
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  from diffusion.paths import REPO  # pylint: disable=import-outside-toplevel
  return subprocess.run([sys.executable, "train.py", f"--config={TOY_FILE}", "--progress=false",
                         "--config.training.num_train_steps=20",
                         "--config.training.log_every=10", "--config.training.checkpoint_every=20",
                         *args], cwd=REPO, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_train_py_search_seeds_give_error_bars_of_the_best_trials(tmp_path):
  """--seeds=3 --seeds_top=1: the best trial by its held-out loss again with training seeds
  S+1 and S+2; summary.md's mean ± 95% interval of the three last held-out losses (read back
  from the runs' metrics.jsonl) against the t table."""
  from diffusion.io.metric_writers import read_metrics  # pylint: disable=import-outside-toplevel
  res = _train(f"--workdir={tmp_path / 's'}", "--search=" + SPACE, "--trials=3",
               "--searcher=random", "--seeds=3", "--seeds_top=1",
               "--config.eval.heldout_loss.num_examples=128")
  assert res.returncode == 0, stderr_tail(res.stderr)
  ledger = sweeps.read_ledger(str(tmp_path / "s"))
  last = {p["name"]: [r["eval/heldout_loss"] for r in read_metrics(p["workdir"])
                      if "eval/heldout_loss" in r][-1] for p in ledger["points"]}
  trials_ = [p for p in ledger["points"] if p["trial"] is not None]
  best = min(trials_, key=lambda p: last[p["name"]])
  base = toy_file_config().training.seed
  replicas = [p for p in ledger["points"] if p["trial"] is None]
  assert sorted((p["config_id"], p["seed"]) for p in replicas) == [
      (best["name"], base + 1), (best["name"], base + 2)]
  assert all(p["status"] == "done" for p in ledger["points"])
  rows = _cells((tmp_path / "s" / "summary.md").read_text(), "Configurations over seeds")
  assert len(rows) == 1 and rows[0][3:] == ["3", f"{base}, {base + 1}, {base + 2}"]
  mean, half = _interval([last[best["name"]]] + [last[p["name"]] for p in replicas])
  got = _mean_and_half(rows[0][2])
  assert got[0] == pytest.approx(mean, rel=1e-4) and got[1] == pytest.approx(half, rel=0.05)


@pytest.mark.slow
def test_train_py_grid_seeds_are_grouped_with_error_bars(tmp_path):
  """--sweep with --seeds=2: every point twice, summary.md's configurations ranked by the
  mean final loss, each with its mean ± 95% interval (t with 1 degree of freedom)."""
  from diffusion.io.metric_writers import read_metrics  # pylint: disable=import-outside-toplevel
  res = _train(f"--workdir={tmp_path / 'g'}", "--sweep=optim.lr=1e-4,1e-2", "--seeds=2")
  assert res.returncode == 0, stderr_tail(res.stderr)
  ledger = sweeps.read_ledger(str(tmp_path / "g"))
  base = toy_file_config().training.seed
  assert [p["name"] for p in ledger["points"]] == [
      f"lr=0.0001_seed={base}", f"lr=0.0001_seed={base + 1}", f"lr=0.01_seed={base}",
      f"lr=0.01_seed={base + 1}"]
  # A point's final loss: its last row's mean over the last log interval (``loss_mean``).
  final = {p["name"]: [r["loss_mean"] for r in read_metrics(p["workdir"]) if "loss" in r][-1]
           for p in ledger["points"]}
  by_lr = {lr: _interval([final[f"lr={lr}_seed={s}"] for s in (base, base + 1)])
           for lr in ("0.0001", "0.01")}
  rows = _cells((tmp_path / "g" / "summary.md").read_text(), "Configurations over training")
  assert [r[0] for r in rows] == ["1", "2"]
  order = sorted(by_lr, key=lambda lr: by_lr[lr][0])
  for row, lr in zip(rows, order):
    assert row[1] == f"optim.lr={lr}" and row[-2:] == ["2", f"{base}, {base + 1}"]
    got = _mean_and_half(row[2])
    assert got[0] == pytest.approx(by_lr[lr][0], rel=1e-4)
    assert got[1] == pytest.approx(by_lr[lr][1], rel=0.05)

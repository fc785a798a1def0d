"""ASHA on real trials: the training loop reports to the search while it
trains, the pruner stops trials at rungs by the rule of asynchronous successive halving
(re-implemented here), a stopped trial is saved at its rung and trains no more; in
``--sweep_mode=sequential`` (through train.py) and inside one vmapped population."""

import glob
import math
import os
import subprocess
import sys

import pytest

from diffusion import sweeps
from diffusion.io.metric_writers import read_metrics
from diffusion.paths import REPO
from diffusion.sweeps import search_settings, trials
from tests.conftest import stderr_tail

pytest.importorskip("optuna")

TOY_FILE = "configs/ddpm/toy_mixture.py"
SPACE = "optim.lr=loguniform(1e-4,3e-2);training.ema_decay=choice(0.5,0.9)"
RUNGS = [10, 30, 90]


def toy(**overrides):
  """configs/ddpm/toy_mixture.py, 100 steps logged every 10 (rungs 10, 30, 90 at η = 3)."""
  from configs.ddpm import toy_mixture  # pylint: disable=import-outside-toplevel
  config = toy_mixture.get_config()
  config.training.num_train_steps = 100
  config.training.log_every = 10
  config.training.checkpoint_every = 50
  config.eval.heldout_loss.num_examples = 128
  config.eval.heldout_loss.batch_size = 128
  for key, value in overrides.items():
    section, field = key.split(".")
    config[section][field] = value
  return config


def asha_rule(reports, eta):
  """Optuna's successive halving, re-implemented: reports [(trial, rung, value)] in the order
  they reached the pruner; at a rung a trial's value joins those recorded there before it,
  and the trial goes on iff its value is among the best max(1, n // η) (n counting itself).
  Returns {trial: the rung that stopped it}; reports after a stop are ignored."""
  recorded, stopped = {}, {}
  for trial, rung, value in reports:
    if trial in stopped:
      continue
    recorded.setdefault(rung, []).append(value)
    keep = max(1, len(recorded[rung]) // eta)
    if value > sorted(recorded[rung])[keep - 1]:
      stopped[trial] = rung
  return stopped


def check_stopped_at_rungs(points):
  """Each stopped trial: status, steps, its logs and newest checkpoint at its rung."""
  for p in points:
    if p["stopped"] is None:
      assert p["status"] == "done" and p["steps"] == 100
      assert [r["step"] for r in p["rungs"]] == RUNGS
      continue
    rung = p["stopped"]["step"]
    assert p["status"] == "stopped" and p["steps"] == rung == RUNGS[p["stopped"]["rung"]]
    assert p["stopped"]["value"] == p["rungs"][-1]["value"]
    assert max(r["step"] for r in read_metrics(p["workdir"])) == rung
    saved = sorted(int(os.path.basename(d)) for d in glob.glob(os.path.join(p["workdir"],
                                                                             "checkpoints", "*"))
                   if os.path.basename(d).isdigit())
    assert saved[-1] == rung
    # The value at the rung is the held-out loss the run logged there.
    logged = {r["step"]: r["eval/heldout_loss"] for r in read_metrics(p["workdir"])
              if "eval/heldout_loss" in r}
    assert p["stopped"]["value"] == logged[rung]


@pytest.mark.slow
def test_train_py_stops_the_worse_trials_at_rungs(tmp_path):
  res = subprocess.run(
      [sys.executable, os.path.join(REPO, "train.py"), f"--config={TOY_FILE}",
       f"--workdir={tmp_path / 's'}", "--search=" + SPACE, "--trials=6", "--searcher=random",
       "--scheduler=asha", "--asha_min_steps=10", "--progress=false",
       "--config.training.num_train_steps=100", "--config.training.log_every=10",
       "--config.training.checkpoint_every=50", "--config.eval.heldout_loss.num_examples=128"],
      cwd=REPO, capture_output=True, text=True, timeout=900)
  assert res.returncode == 0, stderr_tail(res.stderr)
  ledger = sweeps.read_ledger(str(tmp_path / "s"))
  assert ledger["definition"]["rungs"] == RUNGS
  points = sorted(ledger["points"], key=lambda p: p["trial"])
  reports = [(p["trial"], r["rung"], r["value"]) for p in points for r in p["rungs"]]
  want = asha_rule(reports, 3)
  got = {p["trial"]: p["stopped"]["rung"] for p in points if p["stopped"]}
  assert got == want and got, got
  check_stopped_at_rungs(points)
  assert sum(p["steps"] for p in points) < 6 * 100
  assert "(stopped)" in (tmp_path / "s" / "summary.md").read_text()
  assert "stopped at step" in res.stdout


def test_asha_stops_members_inside_one_population(tmp_path):
  ledger = trials.run_search(
      toy(), TOY_FILE, SPACE, str(tmp_path / "s"),
      search_settings.SearchSettings(trials=6, searcher="random", scheduler="asha",
                                     asha_min_steps=10),
      mode="vmap", population_size=6, common_overrides={"training.log_every": 10})
  points = sorted(ledger.points, key=lambda p: p["trial"])
  # A population reaches each rung together; its members report in order (rung-major).
  reports = [(p["trial"], r["rung"], r["value"]) for k in range(len(RUNGS))
             for p in points for r in p["rungs"] if r["rung"] == k]
  want = asha_rule(reports, 3)
  got = {p["trial"]: p["stopped"]["rung"] for p in points if p["stopped"]}
  assert got == want and got, got
  check_stopped_at_rungs(points)
  # The members that went on trained to the end together.
  assert any(p["status"] == "done" for p in points)
  assert math.isclose(sum(p["steps"] for p in points),
                      sum(100 if p["stopped"] is None else p["stopped"]["step"] for p in points))


@pytest.mark.slow
def test_train_py_asha_in_populations_with_another_reduction_and_max_mode(tmp_path):
  """--sweep_mode=vmap --population=3 --asha_reduction=2 --metric_mode=max through train.py:
  rungs at 10·2^k, two populations of three trials one after the other, each member judged
  at its rung by the rule re-implemented (max mode: the rule on the negated values)."""
  res = subprocess.run(
      [sys.executable, os.path.join(REPO, "train.py"), f"--config={TOY_FILE}",
       f"--workdir={tmp_path / 's'}", "--search=" + SPACE, "--trials=6", "--searcher=random",
       "--scheduler=asha", "--asha_min_steps=10", "--asha_reduction=2", "--metric_mode=max",
       "--sweep_mode=vmap", "--population=3", "--progress=false",
       "--config.training.num_train_steps=100", "--config.training.log_every=10",
       "--config.training.checkpoint_every=50", "--config.eval.heldout_loss.num_examples=128"],
      cwd=REPO, capture_output=True, text=True, timeout=900)
  assert res.returncode == 0, stderr_tail(res.stderr)
  ledger = sweeps.read_ledger(str(tmp_path / "s"))
  rungs = [10, 20, 40, 80]
  assert ledger["definition"]["rungs"] == rungs
  points = sorted(ledger["points"], key=lambda p: p["trial"])
  # Populations of trials 0-2, then 3-5; inside one, the members report rung by rung.
  reports = [(p["trial"], r["rung"], -r["value"]) for batch in (points[:3], points[3:])
             for k in range(len(rungs)) for p in batch for r in p["rungs"] if r["rung"] == k]
  want = asha_rule(reports, 2)
  got = {p["trial"]: p["stopped"]["rung"] for p in points if p["stopped"]}
  assert got == want and got, got
  for p in points:
    if p["stopped"] is None:
      assert p["status"] == "done" and p["steps"] == 100
      continue
    assert p["status"] == "stopped" and p["steps"] == rungs[p["stopped"]["rung"]]
    assert max(r["step"] for r in read_metrics(p["workdir"])) == p["steps"]
  # max mode: the first population's largest held-out loss at the first rung goes on.
  first = {p["trial"]: p["rungs"][0]["value"] for p in points[:3]}
  assert got.get(max(first, key=first.get), 1) > 0

"""diffusion/sweeps/trials.py: a search's driver: trains and records trials, refuses a reused
folder, goes on after a failing trial, ASHA against its rule re-implemented here, and the
ledger after a kill -9 of the driver and with two drivers on one study.

The search's logic runs over a stand-in for the training loop (:func:`fake_train`, a run
that logs a known metric) so that each case takes seconds."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from diffusion import sweeps
from diffusion.errors import ConfigError
from diffusion.io.metric_writers import read_metrics
from diffusion.sweeps import search_settings

pytest.importorskip("optuna")
# pylint: disable=wrong-import-position
from diffusion.sweeps import search, trials  # noqa: E402
from diffusion.paths import REPO

from tests.conftest import stderr_tail
from tests.sweeps.test_grid import TOY_FILE, toy_file_config



# ---- a stand-in for the training loop -------------------------------------------------------


SPACE = "optim.lr=loguniform(1e-4,1e-2);training.ema_decay=choice(0.5,0.9,0.99)"
# 10 log rows: a short point's log_every stays 10 (grid.point_config).
STEPS = {"training.num_train_steps": 100, "training.log_every": 10,
         "training.checkpoint_every": 50}


def fake_metric(lr: float, ema: float, seed: int, step: int) -> float:
  """A known metric: best near lr = 10^-2.5, EMA 0.9; falls with training; seed shifts it."""
  return (math.log10(lr) + 2.5) ** 2 + abs(ema - 0.9) + 10.0 / step + 0.01 * seed


def fake_train(cfg, workdir, *, progress=False, on_log, delay=0.0):
  """A run that logs ``eval/fake`` and ``loss`` every log_every steps to metrics.jsonl,
  resumes after its last row, and stops when ``on_log`` says so; lr = 1 fails (NaN)."""
  del progress
  t = cfg.training
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "metrics.jsonl")
  rows = read_metrics(workdir) if os.path.exists(path) else []
  start = rows[-1]["step"] if rows else 0
  if cfg.optim.lr >= 1.0:
    raise FloatingPointError("loss became NaN at step 1")
  step = start
  for step in range(start + t.log_every, t.num_train_steps + 1, t.log_every):
    value = fake_metric(cfg.optim.lr, cfg.training.ema_decay, t.seed, step)
    row = {"step": step, "loss": value, "eval/fake": value}
    with open(path, "a", encoding="utf-8") as f:
      f.write(json.dumps(row) + "\n")
    if delay:
      time.sleep(delay)
    if on_log(step, row):
      return {"step": step, "loss": value}
  return {"step": step, "loss": rows[-1]["loss"] if step == start and rows else value}


def settings(**kw):
  return search_settings.SearchSettings(**{"trials": 6, "metric": "eval/fake", **kw})


def run(tmp_path, name="s", space=SPACE, train_fn=fake_train, **kw):
  config_kw = kw.pop("config", {})
  cfg = toy_file_config(**{**STEPS, **config_kw})
  return trials.run_search(cfg, TOY_FILE, space, str(tmp_path / name), settings(**kw),
                           train_fn=train_fn)


def trial_overrides(ledger_points):
  return [(p["trial"], p["overrides"]) for p in ledger_points if p.get("trial") is not None]


# ---- the driver -----------------------------------------------------------------------------


def test_keys_and_ranges_are_checked_against_the_config_before_anything_trains(tmp_path):
  with pytest.raises(ConfigError, match=r"sweep key 'optim.lrr': the config has no field "
                                        r"'optim.lrr' \(did you mean 'lr'"):
    run(tmp_path, space="optim.lrr=loguniform(1e-4,1e-2)")
  with pytest.raises(ConfigError, match=r"optim.warmup_steps=-5 is not valid"):
    run(tmp_path, space="optim.warmup_steps=randint(-5,5)")
  assert not (tmp_path / "s").exists()


def test_a_search_trains_its_trials_and_records_them(tmp_path):
  ledger = run(tmp_path, trials=4, searcher="random")
  points = ledger.points
  assert [p["trial"] for p in points] == [0, 1, 2, 3]
  assert all(p["status"] == "done" and p["steps"] == 100 for p in points)
  for p in points:
    o = p["overrides"]
    assert p["metric"] == pytest.approx(fake_metric(o["optim.lr"], o["training.ema_decay"],
                                                    0, 100))
    assert p["name"].startswith(f"trial{p['trial']:03d}_lr=")
    assert p["final"]["step"] == 100 and p["owner"] is None
  study = search.open_study(str(tmp_path / "s"), searcher="random", seed=0, trials=4, mode="min")
  assert [t.value for t in study.trials] == pytest.approx([p["metric"] for p in points])
  # Run again: nothing to do; with more trials: only the new ones train.
  mtime = os.path.getmtime(tmp_path / "s" / points[0]["name"] / "metrics.jsonl")
  ledger = run(tmp_path, trials=5, searcher="random")
  assert len(ledger.points) == 5 and ledger.points[4]["status"] == "done"
  assert os.path.getmtime(tmp_path / "s" / points[0]["name"] / "metrics.jsonl") == mtime
  text = (tmp_path / "s" / "summary.md").read_text()
  best = min(ledger.points, key=lambda p: p["metric"])
  assert f"Best trial: {best['trial']} " in text
  assert f"--config.optim.lr={best['overrides']['optim.lr']!r}" in text
  assert "Parameter importance (fANOVA over the 5 trials" in text


def test_a_folder_reused_with_another_definition_is_refused(tmp_path):
  run(tmp_path, trials=1, searcher="random")
  with pytest.raises(ConfigError, match=r"defined differently: the searcher was 'random', now "
                                        r"'tpe'"):
    run(tmp_path, trials=1, searcher="tpe")
  with pytest.raises(ConfigError, match=r"the space was .*loguniform\(0.0001, 0.01\).*now"):
    run(tmp_path, trials=1, searcher="random", space="optim.lr=loguniform(1e-4,1e-3)")
  with pytest.raises(ConfigError, match="holds a search"):
    sweeps.run_sweep(toy_file_config(**STEPS), TOY_FILE, "optim.lr=1e-3", str(tmp_path / "s"))
  sweeps_dir = tmp_path / "grid"
  sweeps.run_sweep(toy_file_config(**{**STEPS, "training.num_train_steps": 10,
                                        "training.checkpoint_every": 10}), TOY_FILE,
                   "optim.lr=1e-3", str(sweeps_dir))
  with pytest.raises(ConfigError, match="holds a grid sweep"):
    run(tmp_path, name="grid", trials=1)


def test_a_failing_trial_is_recorded_and_the_search_goes_on(tmp_path):
  ledger = run(tmp_path, space="optim.lr=choice(1.0,1e-3)", trials=4, searcher="random")
  statuses = {p["overrides"]["optim.lr"]: p["status"] for p in ledger.points}
  assert statuses == {1.0: "failed", 1e-3: "done"}
  failed = next(p for p in ledger.points if p["status"] == "failed")
  assert failed["error"] == "FloatingPointError: loss became NaN at step 1"
  assert "Failed trials:" in (tmp_path / "s" / "summary.md").read_text()


def test_a_metric_never_logged_stops_the_search_naming_those_that_are(tmp_path):
  with pytest.raises(ConfigError, match=r"--metric=eval/nope was not logged by step 10.*the run "
                                        r"logs: eval/fake, loss"):
    run(tmp_path, metric="eval/nope")
  points = sweeps.read_ledger(str(tmp_path / "s"))["points"]
  assert len(points) == 1 and points[0]["status"] == "failed" and points[0]["steps"] == 10


# ---- ASHA -----------------------------------------------------------------------------------


def _asha_decisions(values_by_trial, eta):
  """The rule of asynchronous successive halving as Optuna states it, re-implemented: at
  rung k a trial's value joins those recorded there before it; it goes on iff it is among
  the best max(1, n // η) of them (n counting itself)."""
  recorded, out = {}, []
  for values in values_by_trial:
    decision = None
    for k, v in enumerate(values):
      recorded.setdefault(k, []).append(v)
      keep = max(1, len(recorded[k]) // eta)
      if v > sorted(recorded[k])[keep - 1]:
        decision = k
        break
    out.append(decision)
  return out


def test_asha_stops_trials_at_rungs_by_the_rule(tmp_path):
  ledger = run(tmp_path, trials=12, searcher="random", scheduler="asha", asha_min_steps=10)
  assert sweeps.read_ledger(str(tmp_path / "s"))["definition"]["rungs"] == [10, 30, 90]
  points = ledger.points
  values = [[fake_metric(p["overrides"]["optim.lr"], p["overrides"]["training.ema_decay"], 0, r)
             for r in (10, 30, 90)] for p in points]
  want = _asha_decisions(values, 3)
  got = [p["stopped"]["rung"] if p["stopped"] else None for p in points]
  assert got == want and any(g is not None for g in got) and None in got
  for p, decision in zip(points, got):
    if decision is None:
      assert p["status"] == "done" and p["steps"] == 100
      assert [r["step"] for r in p["rungs"]] == [10, 30, 90]
    else:
      assert p["status"] == "stopped" and p["steps"] == p["stopped"]["step"] == [10, 30, 90][
          decision]
      assert p["stopped"]["value"] == pytest.approx(values[points.index(p)][decision])
      assert len(read_metrics(p["workdir"])) == p["steps"] // 10   # it stopped training there
  text = (tmp_path / "s" / "summary.md").read_text()
  assert "| trial | rung 0 (step 10) | rung 1 (step 30) | rung 2 (step 90) | end |" in text
  assert "(stopped)" in text
  # ASHA cost fewer steps than training all twelve to the end.
  assert sum(p["steps"] for p in points) < 12 * 100


# ---- a driver killed, two drivers -----------------------------------------------------------


def _driver_script(sweep_dir, n, delay, searcher="tpe"):
  return f"""
import sys, functools
sys.path.insert(0, {REPO!r})
from tests.sweeps.test_trials import fake_train, settings, STEPS, SPACE
from tests.sweeps.test_grid import toy_file_config, TOY_FILE
from diffusion.sweeps import trials
trials.run_search(toy_file_config(**STEPS), TOY_FILE, SPACE, {str(sweep_dir)!r},
                  settings(trials={n}, searcher={searcher!r}),
                  train_fn=functools.partial(fake_train, delay={delay}))
"""


@pytest.mark.slow
def test_kill_9_of_the_driver_resumes_the_same_search(tmp_path):
  """The driver killed mid-trial: the rerun skips finished trials, resumes the running one
  after its last logged step, and draws the trials an uninterrupted search draws (TPE)."""
  straight = run(tmp_path, name="straight", trials=6, searcher="tpe")
  sweep_dir = tmp_path / "killed"
  proc = subprocess.Popen([sys.executable, "-c", _driver_script(sweep_dir, 6, 0.05)], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 120
  victim = None
  while time.time() < deadline and victim is None:
    try:
      points = sweeps.read_ledger(str(sweep_dir))["points"]
    except ConfigError:
      points = []
    running = [p for p in points if p["status"] == "running" and p["trial"] >= 3]
    if running and os.path.exists(os.path.join(running[0]["workdir"], "metrics.jsonl")) and \
        len(read_metrics(running[0]["workdir"])) >= 3:
      victim = running[0]
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert victim is not None, proc.stderr.read()[-2000:]
  ledger = sweeps.read_ledger(str(sweep_dir))
  done = [p["name"] for p in ledger["points"] if p["status"] == "done"]
  mtimes = {n: os.path.getmtime(sweep_dir / n / "metrics.jsonl") for n in done}
  resumed = run(tmp_path, name="killed", trials=6, searcher="tpe")
  assert trial_overrides(resumed.points) == trial_overrides(straight.points)
  assert [p["status"] for p in resumed.points] == ["done"] * 6
  assert all(os.path.getmtime(sweep_dir / n / "metrics.jsonl") == t for n, t in mtimes.items())
  steps = [r["step"] for r in read_metrics(victim["workdir"])]
  assert steps == list(range(10, 101, 10))      # resumed after its last row, no row twice
  assert [p["metric"] for p in resumed.points] == pytest.approx(
      [p["metric"] for p in straight.points])


@pytest.mark.slow
def test_two_drivers_share_one_study(tmp_path):
  sweep_dir = tmp_path / "shared"
  procs = [subprocess.Popen([sys.executable, "-c", _driver_script(sweep_dir, 6, 0.02,
                                                                  "random")],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for _ in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
  trained = [o[0].count("search: training trial") for o in outs]
  assert sum(trained) == 6 and min(trained) >= 1, trained      # both took trials
  ledger = sweeps.read_ledger(str(sweep_dir))
  assert sorted(p["trial"] for p in ledger["points"]) == list(range(6))
  assert all(p["status"] == "done" for p in ledger["points"])
  for p in ledger["points"]:     # each trained once, by one process
    assert [r["step"] for r in read_metrics(p["workdir"])] == list(range(10, 101, 10))
  study = search.open_study(str(sweep_dir), searcher="random", seed=0, trials=6, mode="min")
  assert len(study.trials) == 6 and all(t.state.name == "COMPLETE" for t in study.trials)


# ---- bad input through train.py -------------------------------------------------------------


def _train_py(*args):
  return subprocess.run([sys.executable, "train.py", f"--config={TOY_FILE}", "--progress=false",
                         "--config.training.num_train_steps=20",
                         "--config.training.log_every=10", *args],
                        cwd=REPO, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("args, message", [
    (["--search=optim.lr=loguniform(1e-2,1e-4)"],
     "loguniform(0.01, 0.0001) is inverted (low 0.01 > high 0.0001); write "
     "loguniform(0.0001, 0.01)."),
    (["--search=optim.lrr=uniform(0,1)"], "the config has no field 'optim.lrr'"),
    (["--search=" + SPACE, "--trials=0"], "--trials=0"),
    (["--search=" + SPACE, "--sweep=optim.lr=1e-3,2e-3"],
     "error: give --sweep (a grid: every point trained) or --search (trials drawn from a space), "
     "not both."),
])
def test_train_py_refuses_bad_searches_in_one_line_before_anything_is_written(
    tmp_path, args, message):
  res = _train_py(f"--workdir={tmp_path / 'w'}", *args)
  assert res.returncode == 2, stderr_tail(res.stderr, 2000)
  assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
  assert "Traceback" not in res.stderr and not (tmp_path / "w").exists()


@pytest.mark.slow
def test_train_py_judges_by_a_metric_spelled_with_its_evaluator(tmp_path):
  """``--metric=eval/heldout_loss/heldout_loss`` (evaluator, then key: the way the config
  names evaluators) is the metric logged as ``eval/heldout_loss``: the search records and
  ranks by that."""
  res = _train_py(f"--workdir={tmp_path / 's'}", "--search=" + SPACE, "--trials=1",
                  "--metric=eval/heldout_loss/heldout_loss")
  assert res.returncode == 0, stderr_tail(res.stderr, 2000)
  ledger = sweeps.read_ledger(str(tmp_path / "s"))
  assert ledger["definition"]["metric"] == "eval/heldout_loss"
  (point,) = ledger["points"]
  logged = [r["eval/heldout_loss"] for r in read_metrics(point["workdir"])
            if "eval/heldout_loss" in r]
  assert point["status"] == "done" and point["metric"] == logged[-1]


@pytest.mark.slow
def test_train_py_stops_a_search_whose_metric_is_never_logged(tmp_path):
  """Found after the first log interval: one line naming the metrics the run logs; the
  trial is recorded failed."""
  res = _train_py(f"--workdir={tmp_path / 's'}", "--search=" + SPACE, "--trials=2",
                  "--metric=eval/nope")
  assert res.returncode == 2, stderr_tail(res.stderr, 2000)
  line = res.stderr.strip().splitlines()[-1]
  assert line.startswith("error: --metric=eval/nope was not logged by step 10") and \
      "loss" in line and "Traceback" not in res.stderr
  points = sweeps.read_ledger(str(tmp_path / "s"))["points"]
  assert [p["status"] for p in points] == ["failed"]

"""Searches (issue 29): spaces and their bad input, the flags' conflicts, Optuna's samplers
made deterministic per trial, ASHA against its rule re-implemented here, the ledger after a
kill -9 of the driver and with two drivers on one study, seeds with Student-t intervals,
and the summary. The search's logic runs over a stand-in for the training loop
(:func:`fake_train`, a run that logs a known metric) so that each case takes seconds; one
test trains real trials through train.py."""

import glob
import importlib
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from diffusion import sweeps
from diffusion.errors import ConfigError
from diffusion.io.metric_writers import read_metrics
from diffusion.sweeps import search_settings, seeds, spaces, summary
from test_sweeps import REPO, TOY_FILE, run_train, toy_file_config

optuna = pytest.importorskip("optuna")
# pylint: disable=wrong-import-position
from diffusion.sweeps import search, search_summary, trials  # noqa: E402

SPACE = "optim.lr=loguniform(1e-4,1e-2);training.ema_decay=choice(0.5,0.9,0.99)"
# 10 log rows: a short point's log_every stays 10 (grid.point_config).
STEPS = {"training.num_train_steps": 100, "training.log_every": 10,
         "training.checkpoint_every": 50}


# ---- a stand-in for the training loop --------------------------------------------------------


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


# ---- spaces ---------------------------------------------------------------------------------


def test_spaces_from_a_config_function_and_the_command_line():
  written = spaces.parse_space("optim.lr=loguniform(1e-4,1e-2);training.seed=choice(0,1,2);"
                               "optim.warmup_steps=randint(0,500);optim.beta1=uniform(0.8,0.95);"
                               "model.ch_mult=choice((1,2),(1,2,2))")
  assert written == {"optim.lr": sweeps.loguniform(1e-4, 1e-2),
                     "training.seed": sweeps.choice([0, 1, 2]),
                     "optim.warmup_steps": sweeps.randint(0, 500),
                     "optim.beta1": sweeps.uniform(0.8, 0.95),
                     "model.ch_mult": sweeps.choice((1, 2), (1, 2, 2))}
  assert spaces.describe(written)["optim.lr"] == "loguniform(0.0001, 0.01)"
  # Optuna's view, and back: a tuple choice goes through its text.
  ch = written["model.ch_mult"]
  assert ch.from_optuna(ch.to_optuna().choices[1]) == (1, 2, 2)
  assert written["optim.warmup_steps"].to_optuna().high == 500   # both ends included
  config_file = os.path.join(REPO, "configs", "ddpm", "digits.py")
  with pytest.raises(ConfigError, match=r"defines no search_nope\(\)"):
    spaces.load_space(config_file, "nope")


@pytest.mark.parametrize("text, message", [
    ("optim.lr=logunifrom(1e-4,1e-2)", "unknown distribution 'logunifrom' .*did you mean "
                                       "'loguniform'.*choose choice, uniform, loguniform, "
                                       "randint"),
    ("optim.lr=loguniform(1e-2,1e-4)", r"is inverted \(low 0.01 > high 0.0001\); write "
                                       r"loguniform\(0.0001, 0.01\)"),
    ("optim.lr=loguniform(0,1e-2)", "non-positive bound; a log range needs 0 < low"),
    ("optim.lr=loguniform(-1,1e-2)", "non-positive bound"),
    ("optim.lr=uniform(0.1,0.1)", r"is empty \(low = high\)"),
    ("optim.lr=choice()", "choice\\(\\) has no values"),
    ("optim.warmup_steps=randint(0,2.5)", "needs integer bounds"),
    ("optim.warmup_steps=randint(9,3)", "is inverted"),
    ("optim.lr=uniform(0,inf)", "finite numbers"),
    ("optim.lr=uniform(1)", "takes two bounds"),
    ("optim.lr=uniform(low=1,high=2)", "by position"),
    ("optim.lr=choice(a+b)", "not a literal value"),
    ("optim.lr=0.001", "not a distribution call"),
    ("optim.lr", "is not key=distribution"),
    ("training.seed=choice(1,1)", "holds 1 twice"),
    ("optim.lr=uniform(0,1);optim.lr=uniform(0,2)", "optim.lr is given twice"),
])
def test_bad_spaces_are_one_line(text, message):
  with pytest.raises(ConfigError, match=message) as e:
    spaces.parse_space(text)
  assert "\n" not in str(e.value) and str(e.value).startswith("--search=")


SHIPPED = sorted(p for p in glob.glob(os.path.join(REPO, "configs", "*", "*.py"))
                 if "def search_" in open(p).read())


@pytest.mark.parametrize("path", [os.path.relpath(p, REPO) for p in SHIPPED])
def test_every_shipped_search_loads_and_its_ends_are_valid(path):
  module = importlib.import_module(path[:-3].replace("/", "."))
  names = [n[len("search_"):] for n in dir(module) if n.startswith("search_")]
  assert names
  for name in names:
    space = spaces.load_space(path, name)
    trials.check_space(module.get_config(), space, {}, f"--search={name}")
    # judged by the default metric: nothing in it may change what the loss measures
    search_settings.check_against_config(search_settings.SearchSettings(), list(space),
                                 module.get_config().to_dict(), search=True)


def test_a_config_function_must_return_distributions():
  with pytest.raises(ConfigError, match=r"optim.lr is 0.001, not a distribution; write e.g. "
                                        r"optim.lr=choice\(0.001\)"):
    spaces.check_space({"optim.lr": 1e-3}, "search_x()")
  with pytest.raises(ConfigError, match="non-empty dict"):
    spaces.check_space({}, "search_x()")


def test_keys_and_ranges_are_checked_against_the_config_before_anything_trains(tmp_path):
  with pytest.raises(ConfigError, match=r"sweep key 'optim.lrr': the config has no field "
                                        r"'optim.lrr' \(did you mean 'lr'"):
    run(tmp_path, space="optim.lrr=loguniform(1e-4,1e-2)")
  with pytest.raises(ConfigError, match=r"optim.warmup_steps=-5 is not valid"):
    run(tmp_path, space="optim.warmup_steps=randint(-5,5)")
  assert not (tmp_path / "s").exists()


# ---- flags ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw, given, message", [
    (dict(search="a=choice(1,2)", sweep="b=1"), (), "not both"),
    (dict(search="x", trials=0), ("trials",), r"--trials=0: a search needs at least one"),
    (dict(search="x", scheduler="pbt"), ("scheduler",), "use --sweep_mode=vmap"),
    (dict(sweep="x", scheduler="asha"), ("scheduler",), "a --sweep grid trains every point"),
    (dict(search="x", asha_min_steps=50), ("asha_min_steps",), "applies to --scheduler=asha"),
    (dict(search="x", scheduler="asha", asha_reduction=1), ("scheduler", "asha_reduction"),
     "at least 2"),
    (dict(search="x", pbt_quantile=0.3), ("pbt_quantile",), "applies to --scheduler=pbt"),
    (dict(search="x", seeds=0), ("seeds",), "K >= 1"),
    (dict(search="x", seeds_top=2), ("seeds_top",), "give --seeds=K with K >= 2"),
    (dict(search="x", trials=2, seeds=3, seeds_top=3), ("seeds", "seeds_top"), "at most"),
    (dict(), ("trials",), "trains a single run"),
    (dict(sweep="x"), ("searcher",), "not to a --sweep grid"),
    (dict(sweep="x"), ("metric",), "a --sweep grid's summary ranks"),
    (dict(search="x", searcher="bayes"), ("searcher",), "choose one of random, quasirandom, tpe"),
])
def test_conflicting_flags_are_one_line(kw, given, message):
  search_, sweep_ = kw.pop("search", None), kw.pop("sweep", None)
  mode = kw.pop("sweep_mode", "sequential")
  with pytest.raises(ConfigError, match=message):
    search_settings.check_flags(search_settings.SearchSettings(**kw), search=search_,
                                sweep=sweep_, sweep_mode=mode, given=given)


def _check(settings_, keys, cfg):
  search_settings.check_against_config(settings_, keys, cfg, search=True)


def test_flags_that_need_the_config_and_the_space():
  cfg = toy_file_config(**STEPS).to_dict()
  default = search_settings.SearchSettings()
  # A loss metric over a space that changes what the loss measures.
  with pytest.raises(ConfigError, match=r"--metric=eval/heldout_loss is a loss, and the space "
                                        r"changes diffusion.schedule.*--metric=eval/"):
    _check(default, ["optim.lr", "diffusion.schedule"], cfg)
  _check(search_settings.SearchSettings(metric="eval/cfid"), ["diffusion.schedule"], cfg)
  # The σ ladder does not define a VP process's loss: allowed.
  _check(default, ["diffusion.sigma_max"], cfg)
  with pytest.raises(ConfigError, match="already draws training.seed"):
    _check(search_settings.SearchSettings(seeds=2), ["training.seed"], cfg)
  with pytest.raises(ConfigError, match="not before the end of a trial"):
    _check(search_settings.SearchSettings(scheduler="asha", asha_min_steps=100), [], cfg)
  with pytest.raises(ConfigError, match="not a multiple of training.log_every=10.*give e.g. 20"):
    _check(search_settings.SearchSettings(scheduler="asha", asha_min_steps=25), [], cfg)
  assert search_settings.rungs(10, 3, 90) == [10, 30]
  assert search_settings.rungs(10, 3, 91) == [10, 30, 90]
  assert search_settings.asha_min_steps(default, 2000, 100) == 200
  assert search_settings.asha_min_steps(default, 90, 10) == 10


def test_train_py_refuses_conflicts_before_anything_is_written(tmp_path):
  """One command through train.py (the others are the same check_flags, above)."""
  res = run_train(f"--config={TOY_FILE}", f"--workdir={tmp_path / 'w'}", "--search=" + SPACE,
                  "--scheduler=pbt")
  assert res.returncode == 2 and res.stderr.strip().startswith("error: --scheduler=pbt")
  assert "--sweep_mode=vmap" in res.stderr and len(res.stderr.strip().splitlines()) == 1
  assert not (tmp_path / "w").exists()


# ---- samplers -------------------------------------------------------------------------------


@pytest.mark.parametrize("searcher", search_settings.SEARCHERS)
def test_every_searcher_draws_the_same_trials_after_a_restart(tmp_path, searcher):
  """A new study object (a new driver) in the middle of a search draws what one process
  would have drawn: the sampler is a function of (seed, trial number) and the study."""
  space = spaces.parse_space(SPACE + ";optim.warmup_steps=randint(0,50)")
  draws = []
  for restart in (None, 3):
    folder = tmp_path / f"{searcher}_{restart}"
    folder.mkdir()
    study = search.open_study(str(folder), searcher=searcher, seed=0, trials=8, mode="min")
    got = []
    for i in range(8):
      if i == restart:
        study = search.open_study(str(folder), searcher=searcher, seed=0, trials=8, mode="min")
      trial, overrides = search.ask(study, space)
      got.append(overrides)
      study.tell(trial.number, fake_metric(overrides["optim.lr"],
                                           overrides["training.ema_decay"], 0, 100))
    draws.append(got)
  assert draws[0] == draws[1]
  assert len({json.dumps(d, sort_keys=True) for d in draws[0]}) == 8
  # Another seed, another search.
  (tmp_path / f"{searcher}_other").mkdir()
  study = search.open_study(str(tmp_path / f"{searcher}_other"), searcher=searcher, seed=1,
                            trials=8, mode="min")
  assert search.ask(study, space)[1] != draws[0][0]


def test_quasirandom_is_sobol_and_tpe_learns():
  """Sobol points cover the unit square more evenly than random ones (a lower star
  discrepancy, scipy's measure), and TPE's later draws concentrate where the metric is low."""
  from scipy.stats import qmc  # pylint: disable=import-outside-toplevel
  space = spaces.parse_space("optim.lr=uniform(0,1);optim.beta1=uniform(0,1)")
  points = {}
  for searcher in ("quasirandom", "random"):
    study = optuna.create_study(sampler=search.make_sampler(searcher, 0, 64))
    xs = []
    for _ in range(64):
      trial, o = search.ask(study, space)
      xs.append([o["optim.lr"], o["optim.beta1"]])
      study.tell(trial.number, 0.0)
    points[searcher] = np.asarray(xs[1:])    # the first is drawn before the space is known
  assert qmc.discrepancy(points["quasirandom"]) < 0.5 * qmc.discrepancy(points["random"])
  # TPE against random draws on one metric: the last 20 of 40 trials land nearer the best
  # lr (measured over seeds 0-3: median distance 0.38-0.50 decades against 0.94-1.38).
  distance = {}
  for searcher in ("tpe", "random"):
    study = optuna.create_study(sampler=search.make_sampler(searcher, 0, 40))
    lrs = []
    for _ in range(40):
      trial, o = search.ask(study, spaces.parse_space("optim.lr=loguniform(1e-5,1e-1)"))
      lrs.append(o["optim.lr"])
      study.tell(trial.number, (math.log10(o["optim.lr"]) + 2.5) ** 2)
    distance[searcher] = np.median(np.abs(np.log10(lrs[-20:]) + 2.5))
  assert distance["tpe"] < 0.6 * distance["random"]


# ---- the driver -----------------------------------------------------------------------------


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


def _driver_script(sweep_dir, n, delay, searcher="tpe"):
  return f"""
import sys, functools
sys.path.insert(0, {REPO!r}); sys.path.insert(0, {os.path.join(REPO, 'tests')!r})
from test_search import fake_train, settings, STEPS, SPACE
from test_sweeps import toy_file_config, TOY_FILE
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


# ---- seeds ------------------------------------------------------------------------------------


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
  from test_sweeps import _fake_sweep  # pylint: disable=import-outside-toplevel
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


# ---- the summary across folders ---------------------------------------------------------------


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


# ---- through train.py -----------------------------------------------------------------------


@pytest.mark.slow
def test_train_py_runs_a_search_of_real_trials(tmp_path):
  res = run_train(f"--config={TOY_FILE}", f"--workdir={tmp_path / 's'}", "--progress=false",
                  "--search=" + SPACE, "--trials=2", "--metric=loss",
                  "--config.training.num_train_steps=20", "--config.training.log_every=10",
                  "--config.training.checkpoint_every=10")
  assert res.returncode == 0, res.stderr[-3000:]
  ledger = sweeps.read_ledger(str(tmp_path / "s"))
  assert [p["status"] for p in ledger["points"]] == ["done", "done"]
  for p in ledger["points"]:
    rows = read_metrics(p["workdir"])
    assert p["metric"] == rows[-1]["loss"] and p["steps"] == 20
    assert json.load(open(os.path.join(p["workdir"], "config.json")))["optim"]["lr"] == \
        p["overrides"]["optim.lr"]
  assert "Best trial:" in res.stdout and (tmp_path / "s" / "search_progress.png").exists()

"""Population-based training inside one vmapped population: the exploit on
device, the explore rules against their statement, the ranking and quantiles re-implemented
here, the lineage in sweep.json and its plot, bit-exact resume (interrupted at the two
places that matter, and kill -9 of train.py), and the one-line refusals."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from diffusion import families, sweeps
from diffusion.config import checks
from diffusion.errors import ConfigError
from diffusion.io.checkpoints import Checkpointer
from diffusion.io.metric_writers import read_metrics
from diffusion.sweeps import pbt, search_settings
from diffusion.sweeps.ledger import Ledger
from diffusion.train import optim
from diffusion.train.loop import initial_state
from diffusion.train.pbt import Decision, _exploit, state_hyperparameters, train_pbt
from diffusion.paths import REPO
from tests.conftest import stderr_tail

TOY_FILE = "configs/ddpm/toy_mixture.py"
GRID = "optim.lr=5e-4,1e-3,2e-3,4e-3"


def toy(**overrides):
  """configs/ddpm/toy_mixture.py, 50 steps, logged every 5, checkpoints every 10."""
  from configs.ddpm import toy_mixture  # pylint: disable=import-outside-toplevel
  config = toy_mixture.get_config()
  config.training.num_train_steps = 50
  config.training.log_every = 5
  config.training.checkpoint_every = 10
  config.eval.heldout_loss.num_examples = 128
  config.eval.heldout_loss.batch_size = 128
  for key, value in overrides.items():
    *sections, field = key.split(".")
    node = config
    for section in sections:
      node = node[section]
    node[field] = value
  return config


def final_state(workdir, config):
  """(step, the latest checkpoint's TrainState as numpy) of a run."""
  cfg = checks.validate(config)
  target = jax.eval_shape(lambda: initial_state(families.make_family(cfg),
                                                optim.make_optimizer(cfg.optim)))
  ckpt = Checkpointer(str(workdir))
  state, step = ckpt.restore_latest(target)
  ckpt.close()
  return step, jax.tree.map(np.asarray, state)


def assert_same_tree(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(x, y)


def settings(**kw):
  return search_settings.SearchSettings(**{"scheduler": "pbt", "pbt_interval": 10, **kw})


def run_grid(folder, grid=GRID, config=None, **kw):
  return sweeps.run_sweep(config or toy(), TOY_FILE, grid, str(folder), mode="vmap",
                          settings=settings(**kw))


# ---- the exploit, on device ---------------------------------------------------------------


def test_the_exploit_copies_a_members_whole_state_but_its_seed_and_sets_new_hyperparameters():
  cfgs = [checks.validate(toy(**{"optim.lr": lr, "training.seed": s}))
          for lr, s in ((1e-3, 0), (2e-3, 1), (4e-3, 2))]
  states = [initial_state(families.make_family(c), optim.make_optimizer(c.optim)) for c in cfgs]
  # Make the members' states differ everywhere (as after training).
  states = [jax.tree.map(lambda a, i=i: a + i if a.dtype.kind == "f" else a, s)
            for i, s in enumerate(states)]
  states = [s.replace(step=np.int32(10 + i)) for i, s in enumerate(states)]
  stacked = jax.tree.map(lambda *a: np.stack(a), *states)
  new_cfg = checks.validate(toy(**{"optim.lr": 3e-3, "training.ema_decay": 0.5,
                                   "training.seed": 7}))
  hparams, opt = state_hyperparameters(new_cfg)
  rows_h = {k: np.asarray([0.0, v, 0.0], np.float32) for k, v in hparams.items()}
  rows_o = {k: np.asarray([0.0, v, 0.0], np.float32) for k, v in opt.items()}
  out = _exploit(stacked, np.asarray([0, 0, 2], np.int32),
                                  np.asarray([False, True, False]), rows_h, rows_o)
  out = jax.tree.map(np.asarray, out)
  member = lambda tree, i: jax.tree.map(lambda a: a[i], tree)   # noqa: E731
  # Member 1 continues from member 0: parameters, EMA, optimizer moments and count, step.
  for part in ("params", "ema_params"):
    assert_same_tree(member(getattr(out, part), 1), member(getattr(stacked, part), 0))
  assert_same_tree(member(out.opt_state.inner_state, 1), member(stacked.opt_state.inner_state, 0))
  assert out.opt_state.count[1] == stacked.opt_state.count[0] and out.step[1] == 10
  # ... with its own seed and the new hyperparameters.
  assert out.hparams["seed"][1] == 1
  assert out.hparams["ema_decay"][1] == np.float32(0.5)
  assert out.opt_state.hyperparams["learning_rate"][1] == np.float32(3e-3)
  # Members 0 and 2 are untouched.
  for i in (0, 2):
    assert_same_tree(member(out, i), member(stacked, i))


def test_a_member_that_copies_another_continues_exactly_as_it(tmp_path):
  """Two members with one seed and two learning rates; at step 20 member 1 copies member 0
  and takes its learning rate: from there they are one run, bit for bit (the whole state
  was copied, the hyperparameters set)."""

  class CopyOnce:
    def __init__(self, cfg0):
      self.cfg0 = checks.validate(cfg0)

    def due(self, step):
      return step == 20

    def recorded(self, step):
      return False

    def resume(self, step):
      return None

    def decide(self, step, reports):
      assert sorted(reports) == [0, 1] and all("eval/heldout_loss" in r for r in reports.values())
      return Decision(step, (0, 0), {1: self.cfg0})

  configs = [toy(**{"optim.lr": 1e-3, "eval.heldout_loss.every": 5}),
             toy(**{"optim.lr": 3e-3, "eval.heldout_loss.every": 5})]
  dirs = [str(tmp_path / "a"), str(tmp_path / "b")]
  results = train_pbt(configs, dirs, exploiter=CopyOnce(configs[0]), progress=False)
  assert [r["step"] for r in results] == [50, 50]
  (sa, a), (sb, b) = final_state(dirs[0], configs[0]), final_state(dirs[1], configs[1])
  assert sa == sb == 50
  assert_same_tree(a.params, b.params)
  assert_same_tree(a.ema_params, b.ema_params)
  assert_same_tree(a.opt_state, b.opt_state)
  # Before the copy they differed: the loss logged at step 20.
  rows = [{r["step"]: r["loss"] for r in read_metrics(d) if "loss" in r} for d in dirs]
  assert rows[0][20] != rows[1][20] and rows[0][50] == rows[1][50]


# ---- explore, rank, decide ----------------------------------------------------------------


def test_explore_rules():
  rng = np.random.default_rng(0)
  lr = pbt.dimension(sweeps.loguniform(1e-4, 1e-2))
  for value in (1e-3, 9e-3, 1.1e-4):
    for _ in range(20):
      new, how = lr.perturb(value, rng)
      factor = {"x0.8": 0.8, "x1.25": 1.25}[how]
      assert new == pytest.approx(min(max(value * factor, 1e-4), 1e-2), rel=1e-12)
  steps = pbt.dimension(sweeps.randint(0, 500))
  assert {steps.perturb(401, np.random.default_rng(s))[0] for s in range(20)} == {321, 500}
  ema = pbt.dimension(sweeps.choice([0.999, 0.9, 0.99]))     # a choice: sorted, neighbours
  assert ema.values == (0.9, 0.99, 0.999)
  moves = {ema.perturb(0.99, np.random.default_rng(s)) for s in range(20)}
  assert moves == {(0.9, "previous"), (0.999, "next")}
  assert {ema.perturb(0.999, np.random.default_rng(s))[0] for s in range(20)} == {0.99, 0.999}
  draws = [lr.resample(np.random.default_rng(s)) for s in range(2000)]
  assert min(draws) >= 1e-4 and max(draws) <= 1e-2
  # log-uniform: log10 of the draws is uniform on [-4, -2] (mean -3, sd 2/sqrt(12)); 4 s.e.
  logs = np.log10(draws)
  assert abs(logs.mean() + 3) < 4 * (2 / math.sqrt(12)) / math.sqrt(2000)
  # A grid's numeric axis: its range, resampled from its values.
  axis = pbt.grid_dimension([5e-4, 1e-3, 2e-3, 1e-3])
  assert (axis.low, axis.high, axis.values) == (5e-4, 2e-3, (5e-4, 1e-3, 2e-3))
  assert {axis.resample(np.random.default_rng(s)) for s in range(50)} == {5e-4, 1e-3, 2e-3}
  assert pbt.grid_dimension(["cosine", "constant"]).values == ("cosine", "constant")


def _controller(tmp_path, n, quantile=0.25, resample=0.0, mode="min", seed=0):
  names = [f"m{i}" for i in range(n)]
  os.makedirs(tmp_path, exist_ok=True)
  ledger = Ledger.open(str(tmp_path), TOY_FILE, "g", {}, names, [{"optim.lr": 1e-3}] * n)
  s = search_settings.SearchSettings(scheduler="pbt", pbt_quantile=quantile,
                                     pbt_resample=resample, seed=seed)
  pbt.open_lineage(ledger, pbt.definition(s, 10, mode, ["optim.lr"]))
  dims = {"optim.lr": pbt.dimension(sweeps.loguniform(1e-4, 1e-2))}
  made = []
  controller = pbt.Controller(ledger, names, [{"optim.lr": 1e-3 * (i + 1)} for i in range(n)],
                              dims, 100, lambda o, label: made.append(o) or o)
  controller.resume(None)
  return controller, ledger


@pytest.mark.parametrize("n, quantile, copies", [(8, 0.25, 2), (2, 0.25, 1), (3, 0.5, 1),
                                                  (5, 0.2, 1), (7, 0.3, 3)])
def test_the_bottom_quantile_copies_the_top_by_the_rule(tmp_path, n, quantile, copies):
  """Re-implemented: q = min(ceil(n · quantile), floor(n / 2)); the q worst copy one of the
  q best, drawn from (seed, step); the same reports give the same decision."""
  values = np.random.default_rng(n).permutation(n).astype(float)
  reports = {i: {"eval/heldout_loss": float(v), "loss": 1.0} for i, v in enumerate(values)}
  controller, ledger = _controller(tmp_path, n, quantile)
  decision = controller.decide(10, reports)
  q = min(math.ceil(n * quantile), n // 2)
  assert q == copies
  order = list(np.argsort(values))
  top, bottom = set(order[:q]), set(order[n - q:])
  assert set(decision.configs) == bottom
  assert all(decision.sources[i] in top for i in bottom)
  assert all(decision.sources[i] == i for i in range(n) if i not in bottom)
  record = ledger.data["pbt"]["decisions"][-1]
  assert [r[0] for r in record["ranking"]] == [f"m{i}" for i in order]
  for c in record["copies"]:   # explored from the source's value: x0.8 or x1.25
    src = 1e-3 * (int(c["from"][1:]) + 1)
    assert c["values"]["optim.lr"] == pytest.approx(
        src * {"x0.8": 0.8, "x1.25": 1.25}[c["how"]["optim.lr"]])
    schedule = ledger.point(c["member"])["schedule"]
    assert schedule[-1] == {"step": 10, "values": c["values"], "from": c["from"]}
  other, _ = _controller(tmp_path / "again", n, quantile)
  assert other.decide(10, reports) == decision
  assert controller.recorded(10) and not controller.recorded(20)


def test_max_mode_and_non_finite_values_rank_last(tmp_path):
  controller, _ = _controller(tmp_path, 4, 0.25, mode="max")
  decision = controller.decide(10, {i: {"eval/heldout_loss": v} for i, v in
                                    enumerate([1.0, 3.0, float("nan"), 2.0])})
  assert set(decision.configs) == {2} and decision.sources[2] == 1


def test_a_metric_missing_when_pbt_ranks_is_one_line(tmp_path):
  controller, _ = _controller(tmp_path, 2)
  with pytest.raises(search_settings.MetricNotLogged, match=r"--metric=eval/heldout_loss was "
                                                            r"not logged by step 10.*loss"):
    controller.decide(10, {0: {"loss": 1.0}, 1: {"loss": 2.0}})


# ---- a grid with PBT: lineage, plot, resume -------------------------------------------------


def test_a_grid_with_pbt_records_its_lineage_and_draws_its_schedules(tmp_path):
  ledger = run_grid(tmp_path / "g", pbt_resample=0.25)
  data = sweeps.read_ledger(str(tmp_path / "g"))
  d = data["pbt"]
  assert d["interval"] == 10 and d["keys"] == ["optim.lr"] and d["metric_mode"] == "min"
  assert [r["step"] for r in d["decisions"]] == [10, 20, 30, 40]
  assert all(len(r["copies"]) == 1 for r in d["decisions"])    # q = ceil(4 · 0.25) = 1
  for r in d["decisions"]:
    # The ranking is by the held-out loss each member logged at that step.
    for name, value in r["ranking"]:
      logged = {row["step"]: row for row in read_metrics(str(tmp_path / "g" / name))
                if "eval/heldout_loss" in row}
      assert logged[r["step"]]["eval/heldout_loss"] == value
    assert r["copies"][0]["member"] == r["ranking"][-1][0]
  for p in data["points"]:
    assert p["status"] == "done" and p["schedule"][0]["step"] == 0
    assert p["schedule"][0]["values"] == {"optim.lr": p["overrides"]["optim.lr"]}
    assert all(e["values"]["optim.lr"] >= 5e-4 and e["values"]["optim.lr"] <= 4e-3
               for e in p["schedule"])
  text = (tmp_path / "g" / "summary.md").read_text()
  assert "Population-based training: every 10 steps" in text and "4 decisions, 4 copies" in text
  assert (tmp_path / "g" / "pbt_schedules.png").exists()
  assert all(p["status"] == "done" for p in ledger.points)
  # Reused with other PBT settings: refused with what changed.
  with pytest.raises(ConfigError, match="was defined differently: quantile was 0.25, now 0.5"):
    run_grid(tmp_path / "g", pbt_quantile=0.5)


def test_an_interrupted_pbt_run_resumes_bit_exactly(tmp_path, monkeypatch):
  """Stopped twice: (a) at step 20 after its checkpoint, before the decision of step 20 (the
  population goes back to checkpoint 10, reapplies decision 10 and redoes the steps), (b)
  at step 30 after the decision of 30 was recorded (checkpoint 30 holds the state before
  it: the decision is applied again). It ends with the parameters, optimizer state and
  lineage of a run that was not stopped."""
  run_grid(tmp_path / "straight")
  decide = pbt.Controller.decide
  stops = {20: "before", 30: "after"}

  def interrupted(self, step, reports):
    if stops.get(step) == "before":
      del stops[step]
      raise KeyboardInterrupt
    decision = decide(self, step, reports)
    if stops.get(step) == "after":
      del stops[step]
      raise KeyboardInterrupt
    return decision

  monkeypatch.setattr(pbt.Controller, "decide", interrupted)
  for expected in ("running", "running", "done"):
    run_grid(tmp_path / "stopped")
    data = sweeps.read_ledger(str(tmp_path / "stopped"))
    assert {p["status"] for p in data["points"]} == {expected}
  assert not stops
  straight = sweeps.read_ledger(str(tmp_path / "straight"))
  assert data["pbt"]["decisions"] == straight["pbt"]["decisions"]
  assert [p["schedule"] for p in data["points"]] == [p["schedule"] for p in straight["points"]]
  for p in straight["points"]:
    cfg = toy(**p["overrides"])
    sa, a = final_state(tmp_path / "straight" / p["name"], cfg)
    sb, b = final_state(tmp_path / "stopped" / p["name"], cfg)
    assert sa == sb == 50
    assert_same_tree(a, b)


# ---- through train.py -----------------------------------------------------------------------


def run_train(*args, timeout=600):
  return subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *args], cwd=REPO,
                        capture_output=True, text=True, timeout=timeout)


SHORT = ["--config.training.num_train_steps=50", "--config.training.log_every=5",
         "--config.training.checkpoint_every=10", "--config.eval.heldout_loss.num_examples=128",
         "--progress=false"]


@pytest.mark.parametrize("args, message", [
    (["--sweep=model.hidden_dims=(16,),(32,)", "--sweep_mode=vmap", "--scheduler=pbt"],
     "error: --scheduler=pbt perturbs the members of one population, and the grid varies "
     "model.hidden_dims, which is not a population field"),
    (["--search=training.batch_size=choice(8,16)", "--sweep_mode=vmap", "--scheduler=pbt"],
     "the search space varies training.batch_size, which is not a population field"),
    (["--sweep=training.seed=0,1", "--sweep_mode=vmap", "--scheduler=pbt"],
     "has nothing to perturb"),
    (["--sweep=" + GRID, "--sweep_mode=vmap", "--scheduler=pbt", "--pbt_interval=7"],
     "--pbt_interval=7 is not a multiple of training.log_every=5"),
    (["--sweep=" + GRID, "--sweep_mode=ray", "--scheduler=pbt"], "use --sweep_mode=vmap"),
    (["--sweep=" + GRID, "--scheduler=pbt"], "not sequential"),
])
def test_bad_pbt_commands_are_one_line_before_anything_trains(tmp_path, args, message):
  res = run_train(f"--config={TOY_FILE}", f"--workdir={tmp_path / 'w'}", *SHORT, *args)
  assert res.returncode == 2, stderr_tail(res.stderr, 2000)
  assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
  assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_kill_9_of_a_pbt_search_resumes_to_the_same_parameters(tmp_path):
  """A PBT search of 4 trials through train.py, killed (-9) after its second decision,
  then run again: the lineage and every member's final parameters are those of the run
  that was not killed."""
  args = [f"--config={TOY_FILE}", "--search=optim.lr=loguniform(1e-4,1e-2)", "--trials=4",
          "--searcher=random", "--sweep_mode=vmap", "--scheduler=pbt", "--pbt_interval=10",
          *SHORT]
  res = run_train(f"--workdir={tmp_path / 'straight'}", *args)
  assert res.returncode == 0, stderr_tail(res.stderr)
  assert "pbt: step 30:" in res.stdout and (tmp_path / "straight" / "pbt_schedules.png").exists()
  killed = tmp_path / "killed"
  proc = subprocess.Popen([sys.executable, os.path.join(REPO, "train.py"),
                           f"--workdir={killed}", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while time.time() < deadline:
    try:
      decisions = json.load(open(killed / "sweep.json"))["pbt"]["decisions"]
    except (OSError, ValueError, KeyError):
      decisions = []
    if len(decisions) >= 2:
      break
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert len(decisions) >= 2
  res = run_train(f"--workdir={killed}", *args)
  assert res.returncode == 0, stderr_tail(res.stderr)
  a = sweeps.read_ledger(str(tmp_path / "straight"))
  b = sweeps.read_ledger(str(killed))
  assert b["pbt"]["decisions"] == a["pbt"]["decisions"]
  assert [p["status"] for p in b["points"]] == ["done"] * 4
  for pa, pb in zip(a["points"], b["points"]):
    assert pa["name"] == pb["name"] and pa["schedule"] == pb["schedule"]
    cfg = toy(**pa["overrides"])
    assert_same_tree(final_state(pa["workdir"], cfg)[1], final_state(pb["workdir"], cfg)[1])


SHIPPED = ["configs/ddpm/digits.py", "configs/ddpm/toy_mixture.py"]


@pytest.mark.parametrize("path", SHIPPED)
def test_the_shipped_searches_take_every_scheduler(path):
  """search_lr_ema() of each shipped config: PBT can perturb every key (population fields),
  ASHA's rungs fall inside a run, and Ray Tune has a domain for every distribution."""
  import importlib.util  # pylint: disable=import-outside-toplevel
  from diffusion.sweeps import spaces  # pylint: disable=import-outside-toplevel
  config = importlib.import_module(path[:-3].replace("/", ".")).get_config()
  space = spaces.load_space(path, "lr_ema")
  assert pbt.check_perturbable(list(space), "the search space") == list(space)
  assert pbt.check_interval(search_settings.SearchSettings(scheduler="pbt"), config) == \
      config.training.log_every
  t = config.training
  first = search_settings.asha_min_steps(search_settings.SearchSettings(scheduler="asha"),
                                         t.num_train_steps, t.log_every)
  assert search_settings.rungs(first, 3, t.num_train_steps)[-1] < t.num_train_steps
  if importlib.util.find_spec("ray") is not None:
    from diffusion.sweeps import ray_tune  # pylint: disable=import-outside-toplevel
    for dist in space.values():
      ray_tune.tune_domain(dist)


def test_seed_repeats_of_a_pbt_search_are_refused(tmp_path):
  from diffusion.sweeps import trials  # pylint: disable=import-outside-toplevel
  with pytest.raises(ConfigError, match="a PBT member does not keep"):
    trials.run_search(toy(), TOY_FILE, "optim.lr=loguniform(1e-4,1e-2)", str(tmp_path / "s"),
                      settings(trials=4, seeds=2), mode="vmap")
  assert not (tmp_path / "s").exists()


def _explore_re_derived(current, rng, resample):
  """PBT's explore, re-implemented from its statement for the space of
  test_train_py_pbt_exploits_and_explores_by_the_rule: per key in sorted order, with
  probability ``resample`` a fresh draw (lr log-uniform on [1e-4, 1e-2], EMA one of the
  choices), else lr × 0.8 or × 1.25 clipped into its range, EMA a neighbouring choice."""
  choices = [0.5, 0.9, 0.99]
  new, how = {}, {}
  for key in ("optim.lr", "training.ema_decay"):
    if rng.random() < resample:
      how[key] = "resampled"
      if key == "optim.lr":
        new[key] = math.exp(rng.uniform(math.log(1e-4), math.log(1e-2)))
      else:
        new[key] = choices[int(rng.integers(3))]
    elif key == "optim.lr":
      factor = (0.8, 1.25)[int(rng.integers(2))]
      new[key], how[key] = min(max(current[key] * factor, 1e-4), 1e-2), f"x{factor:g}"
    else:
      move = (-1, 1)[int(rng.integers(2))]
      index = min(max(choices.index(current[key]) + move, 0), 2)
      new[key], how[key] = choices[index], ("previous" if move < 0 else "next")
  return new, how


@pytest.mark.slow
def test_train_py_pbt_exploits_and_explores_by_the_rule(tmp_path):
  """--scheduler=pbt --sweep_mode=vmap --population --pbt_interval --pbt_quantile
  --pbt_resample through train.py; every decision re-derived here from the held-out losses
  the members logged and the rule (rank, the bottom q = min(ceil(P·quantile), P // 2) copy a
  member of the top q drawn from (seed, step), explore), and the final checkpoints hold the
  values each member's schedule ends with."""
  space = "optim.lr=loguniform(1e-4,1e-2);training.ema_decay=choice(0.5,0.9,0.99)"
  res = run_train(f"--config={TOY_FILE}", f"--workdir={tmp_path / 's'}", f"--search={space}",
                  "--trials=4", "--population=4", "--searcher=random", "--sweep_mode=vmap",
                  "--scheduler=pbt", "--pbt_interval=10", "--pbt_quantile=0.5",
                  "--pbt_resample=0.5", *SHORT)
  assert res.returncode == 0, stderr_tail(res.stderr)
  data = sweeps.read_ledger(str(tmp_path / "s"))
  d = data["pbt"]
  assert (d["quantile"], d["resample"], d["interval"]) == (0.5, 0.5, 10)
  assert d["seed"] == toy().training.seed
  assert [r["step"] for r in d["decisions"]] == [10, 20, 30, 40]
  points = {p["name"]: p for p in data["points"]}
  current = {n: {k: p["overrides"][k] for k in ("optim.lr", "training.ema_decay")}
             for n, p in points.items()}
  hows = set()
  for record in d["decisions"]:
    step, names = record["step"], record["members"]
    logged = {n: next(r["eval/heldout_loss"] for r in read_metrics(points[n]["workdir"])
                      if r["step"] == step and "eval/heldout_loss" in r) for n in names}
    ranking = sorted(range(4), key=lambda i: (logged[names[i]], i))
    assert record["ranking"] == [[names[i], logged[names[i]]] for i in ranking]
    q = min(math.ceil(4 * 0.5), 4 // 2)
    top, bottom = ranking[:q], ranking[4 - q:]
    rng = np.random.default_rng([d["seed"], step, pbt.SALT])
    want = []
    for i in bottom:
      j = top[int(rng.integers(len(top)))]
      values, how = _explore_re_derived(current[names[j]], rng, 0.5)
      want.append((names[i], names[j], values, how))
      hows.update(how.values())
    got = [(c["member"], c["from"], c["values"], c["how"]) for c in record["copies"]]
    assert [g[:2] for g in got] == [w[:2] for w in want]
    for g, w in zip(got, want):
      assert g[3] == w[3] and g[2]["training.ema_decay"] == w[2]["training.ema_decay"]
      assert g[2]["optim.lr"] == pytest.approx(w[2]["optim.lr"], rel=1e-12)
    for member, source, values, _ in got:
      current[member] = dict(values)
      assert {"step": step, "values": values, "from": source} in points[member]["schedule"]
  assert {"resampled"} < hows   # both explore rules happened
  for name, p in points.items():
    assert p["schedule"][-1]["values"] == current[name]
    assert p["status"] == "done"
    cfg = toy(**p["overrides"])
    step, state = final_state(p["workdir"], cfg)
    assert step == 50
    assert state.hparams["ema_decay"] == np.float32(current[name]["training.ema_decay"])
    assert state.opt_state.hyperparams["learning_rate"] == np.float32(current[name]["optim.lr"])

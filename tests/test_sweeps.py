"""Sweeps: definitions, point names, validation, short points' logging, the ledger, the
summary (colours, comparability, no matplotlib), resume after kill -9, vmapped populations
(against sequential runs, 8 devices, jax.distributed), Ray."""

import glob
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusion import families, sweeps, trees
from diffusion.config import POPULATION_FIELDS, checks, program_key
from diffusion.errors import ConfigError
from diffusion.sweeps import grid, summary
from diffusion.io.metric_writers import read_metrics
from test_training import (assert_same_final_state, assert_trees_equal, read_state,
                           saved_steps, toy_config)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY_FILE = "configs/ddpm/toy_mixture.py"


def toy_file_config(**overrides):
  """configs/ddpm/toy_mixture.py as the command line loads it, shortened."""
  config = importlib.import_module("configs.ddpm.toy_mixture").get_config()
  for key, value in overrides.items():
    section, field = key.split(".")
    config[section][field] = value
  return config


def run_train(*args, timeout=600, env=None):
  return subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *args], cwd=REPO,
                        capture_output=True, text=True, timeout=timeout,
                        env=dict(os.environ, **(env or {})))


# ---- definitions ----------------------------------------------------------------------------


def test_product_zip_chain_and_the_command_line_grid():
  a = sweeps.sweep("optim.lr", [1e-4, 2e-4])
  b = sweeps.sweep("training.seed", [0, 1, 2])
  assert sweeps.product(a, b) == [{"optim.lr": lr, "training.seed": s}
                                  for lr in (1e-4, 2e-4) for s in (0, 1, 2)]
  assert sweeps.zip(a, sweeps.sweep("training.seed", [7, 8])) == [
      {"optim.lr": 1e-4, "training.seed": 7}, {"optim.lr": 2e-4, "training.seed": 8}]
  assert sweeps.chain(a, b) == a + b
  assert sweeps.parse_grid("optim.lr=1e-4,2e-4;training.seed=0,1,2") == sweeps.product(a, b)
  assert sweeps.parse_grid("model.ch_mult=(1,2),(1,2,2);data.dataset=digits") == [
      {"model.ch_mult": (1, 2), "data.dataset": "digits"},
      {"model.ch_mult": (1, 2, 2), "data.dataset": "digits"}]
  with pytest.raises(ConfigError, match="equal length"):
    sweeps.zip(a, b)
  with pytest.raises(ConfigError, match="sets optim.lr twice"):
    sweeps.product(a, sweeps.sweep("optim.lr", [3e-4]))
  with pytest.raises(ConfigError, match="is not key=v1,v2"):
    sweeps.parse_grid("optim.lr")


def test_point_names_are_readable_stable_and_safe():
  points = sweeps.parse_grid("optim.lr=1e-4,2e-4;training.seed=0,1")
  names = sweeps.point_names(points)
  assert names == ["lr=0.0001_seed=0", "lr=0.0001_seed=1", "lr=0.0002_seed=0",
                   "lr=0.0002_seed=1"]
  assert sweeps.point_names(points) == names                     # a function of the overrides
  # Keys sharing a last component keep their full path; unsafe characters are replaced.
  clash = [{"optim.eps": 1e-8, "diffusion.eps": 0.5, "data.dataset": "lsun/cat"}]
  assert sweeps.point_names(clash) == ["optim.eps=1e-08_diffusion.eps=0.5_dataset=lsun-cat"]
  long = [{"model.hidden_dims": tuple(range(1, 60))}]
  name = sweeps.point_names(long)[0]
  assert len(name) <= sweeps.grid.MAX_NAME and "/" not in name
  with pytest.raises(ConfigError, match="two points named"):
    sweeps.point_names([{"optim.lr": 1e-4}, {"optim.lr": 1e-4}])


SHIPPED = sorted(p for p in glob.glob(os.path.join(REPO, "configs", "*", "*.py"))
                 if "sweep_" in open(p).read())


@pytest.mark.parametrize("path", [os.path.relpath(p, REPO) for p in SHIPPED])
def test_every_shipped_sweep_expands_and_validates(path):
  module = importlib.import_module(path[:-3].replace("/", "."))
  names = [n[len("sweep_"):] for n in dir(module) if n.startswith("sweep_")]
  assert names
  for name in names:
    points = sweeps.prepare(module.get_config(), path, name)
    assert len(points) >= 2
    for p in points:   # the config a point trains, short-point logging included, is valid
      checks.validate(grid.point_config(module.get_config(), p["overrides"]))


def test_every_point_is_validated_before_anything_trains(tmp_path):
  with pytest.raises(ConfigError, match=r"^sweep point lr=-0.001: optim.lr=-0.001 is not valid"):
    sweeps.run_sweep(toy_file_config(), TOY_FILE, "optim.lr=1e-3,-1e-3", str(tmp_path))
  assert not os.listdir(tmp_path)
  with pytest.raises(ConfigError, match="has no field 'optim.lrr'.*did you mean 'lr'"):
    sweeps.run_sweep(toy_file_config(), TOY_FILE, "optim.lrr=1e-3", str(tmp_path))
  with pytest.raises(ConfigError, match="defines no sweep_lr_seeds.*did you mean 'lr_seed'"):
    sweeps.run_sweep(toy_file_config(), TOY_FILE, "lr_seeds", str(tmp_path))


# A valid other value (or set of values) for every population field.
POPULATION_CHANGES = [
    {"training.seed": 5}, {"training.ema_decay": 0.5}, {"optim.lr": 3e-3},
    {"optim.warmup_steps": 7}, {"optim.beta1": 0.5}, {"optim.beta2": 0.9}, {"optim.eps": 1e-6},
    {"optim.grad_clip": 0.0},
    {"optim.lr_schedule": "cosine", "optim.decay_steps": 100, "optim.min_lr": 1e-5},
    {"optim.lr_schedule": "exponential", "optim.decay_steps": 50, "optim.decay_rate": 0.5},
]


def _step_program(config):
  """The jaxpr of one train step of ``config``: constants baked in would show here."""
  from diffusion.train import optim as optimizers  # pylint: disable=import-outside-toplevel
  from diffusion.data import make_source  # pylint: disable=import-outside-toplevel
  from diffusion.train.loop import initial_state  # pylint: disable=import-outside-toplevel
  from diffusion.train.step import train_step  # pylint: disable=import-outside-toplevel
  family = families.make_family(config)
  opt = optimizers.make_optimizer(config.optim)
  source = make_source(config.data)
  state = jax.eval_shape(lambda: initial_state(family, opt))
  fn = lambda s: train_step(s, {}, loss_fn=family.loss_fn, optimizer=opt,  # noqa: E731
                            get_batch=source.batch_fn(config.training.batch_size))
  return str(jax.make_jaxpr(fn)(state))


def test_population_fields_do_not_change_the_program():
  """Configs that differ only in population fields have one program key and the same
  compiled step (the values are arrays of the state); a shape change splits a group."""
  base = toy_config()
  program = _step_program(base)
  changed = set()
  for change in POPULATION_CHANGES:
    other = toy_config(**change)
    assert program_key(other) == program_key(base), change
    assert _step_program(other) == program, change
    changed |= set(change)
  hybrid = toy_config(**{"diffusion.loss": "hybrid", "diffusion.var_type": "learned_range",
                         "diffusion.decoder": "gaussian", "model.out_channels": 4})
  hybrid2 = toy_config(**{"diffusion.loss": "hybrid", "diffusion.var_type": "learned_range",
                          "diffusion.decoder": "gaussian", "model.out_channels": 4,
                          "diffusion.hybrid_lambda": 0.1})
  assert _step_program(hybrid) == _step_program(hybrid2)
  changed.add("diffusion.hybrid_lambda")
  adamw = [toy_config(**{"optim.optimizer": "adamw", "optim.weight_decay": wd})
           for wd in (0.0, 0.1)]
  assert _step_program(adamw[0]) == _step_program(adamw[1])
  changed.add("optim.weight_decay")
  from configs.vae import digits as vae_digits  # pylint: disable=import-outside-toplevel
  vae = [vae_digits.get_config() for _ in range(2)]
  vae[1].vae.kl_weight = 4.0
  assert program_key(vae[0]) == program_key(vae[1])
  jaxprs = []
  for cfg in vae:                      # the loss reads kl_weight from the state's hparams
    fam = families.make_family(cfg)
    assert "kl_weight" in fam.loss_hparams()
    x = jax.ShapeDtypeStruct((4, *fam.example_shape), jnp.float32)
    jaxprs.append(str(jax.make_jaxpr(fam.loss_fn)(
        fam.abstract_params(), x, jax.random.PRNGKey(0),
        {k: jnp.float32(v) for k, v in fam.loss_hparams().items()})))
  assert jaxprs[0] == jaxprs[1]
  changed.add("vae.kl_weight")
  assert changed == set(POPULATION_FIELDS)
  points = [{"config": toy_config(**{"optim.lr": lr, "model.hidden_dims": dims})}
            for lr in (1e-3, 2e-3) for dims in ((32, 32), (64,))]
  assert [len(g) for g in sweeps.groups(points)] == [2, 2]


# ---- short points log often enough to draw a curve -------------------------------------------


@pytest.mark.parametrize("steps, every, per_call, want", [
    (200, 100, 1, 20),      # 2 rows -> 10
    (200, 100, 10, 20),     # a multiple of steps_per_call
    (150, 50, 10, 10),      # 15 // 10 rounds down to one call: 15 rows
    (50, 50, 10, 10),       # 5 calls: a row after every call is the most there can be
    (20, 20, 10, 10),
    (95, 100, 1, 9),        # 10 multiples and the last step: 11 rows
    (1000, 100, 1, 100),    # already 10 rows: unchanged
    (200, 5, 1, 5),         # never less often than asked
])
def test_short_run_log_every(steps, every, per_call, want):
  got = grid.short_run_log_every(steps, every, per_call)
  assert got == want
  assert got % per_call == 0 and got <= every
  assert grid.logged_rows(steps, got) >= min(grid.MIN_LOG_ROWS, steps // per_call)


def test_point_config_logs_short_points_often_and_changes_nothing_else():
  cfg = toy_file_config(**{"training.num_train_steps": 200, "training.log_every": 100,
                           "training.checkpoint_every": 100})
  points = sweeps.parse_grid("optim.lr=1e-3,2e-3;training.seed=0,1")
  made = [grid.point_config(cfg, p) for p in points]
  for p, point_cfg in zip(points, made):
    plain = sweeps.apply_overrides(cfg, p).to_dict()
    assert plain["training"].pop("log_every") == 100
    got = point_cfg.to_dict()
    assert got["training"].pop("log_every") == 20
    assert got == plain                     # the same steps, loss, optimizer, ...
    checks.validate(point_cfg)
  assert len(sweeps.groups([{"config": c} for c in made])) == 1   # still one population
  assert "4 point(s) every 20 steps instead of 100" in grid.log_every_note(cfg, points)
  # steps_per_call 10: a multiple of it.
  per_call = toy_file_config(**{"training.num_train_steps": 200, "training.log_every": 100,
                                "training.checkpoint_every": 100,
                                "training.steps_per_call": 10})
  assert grid.point_config(per_call, points[0]).training.log_every == 20
  checks.validate(grid.point_config(per_call, points[0]))
  # A log_every the user chose, in the sweep or on the command line, is kept.
  explicit = sweeps.parse_grid("optim.lr=1e-3,2e-3;training.log_every=100")
  assert [grid.point_config(cfg, p).training.log_every for p in explicit] == [100, 100]
  assert grid.log_every_note(cfg, explicit) == ""
  assert grid.point_config(cfg, points[0], {"training.log_every": 100}).training.log_every == 100
  assert grid.point_config(cfg, {"training": {"log_every": 100}}).training.log_every == 100
  # Long enough already: untouched.
  long = toy_file_config(**{"training.num_train_steps": 2000, "training.log_every": 100})
  assert grid.point_config(long, points[0]).training.log_every == 100
  assert grid.log_every_note(long, points) == ""


def test_logging_more_often_trains_the_same_point(tmp_path):
  from diffusion.train.loop import train  # pylint: disable=import-outside-toplevel
  cfg = toy_file_config(**{"training.num_train_steps": 20, "training.log_every": 10,
                           "training.checkpoint_every": 20})
  often = grid.point_config(cfg, {"training.seed": 1})
  assert often.training.log_every == 2
  plain = sweeps.apply_overrides(cfg, {"training.seed": 1})
  train(often, str(tmp_path / "often"), progress=False)
  train(plain, str(tmp_path / "plain"), progress=False)
  assert_same_final_state(tmp_path / "often", often, tmp_path / "plain", plain, 20)
  rows = {n: read_metrics(str(tmp_path / n)) for n in ("often", "plain")}
  assert [r["step"] for r in rows["often"]] == list(range(2, 21, 2))
  assert [r["step"] for r in rows["plain"]] == [10, 20]
  assert rows["often"][-1]["loss"] == rows["plain"][-1]["loss"]


# ---- the summary ----------------------------------------------------------------------------


def test_colour_groups_are_the_other_keys_values():
  points = sweeps.product(sweeps.sweep("optim.lr", [4e-4, 1e-4, 2e-4]),
                          sweeps.sweep("training.seed", [0, 1]))
  # x = lr: one line per seed, its points in the order of lr.
  assert summary.colour_groups(points, "optim.lr") == [("seed=0", [2, 4, 0]),
                                                       ("seed=1", [3, 5, 1])]
  # x = seed: one line per lr.
  assert summary.colour_groups(points, "training.seed") == [
      ("lr=0.0004", [0, 1]), ("lr=0.0001", [2, 3]), ("lr=0.0002", [4, 5])]
  # One swept axis: one group, one colour, no legend text.
  assert summary.colour_groups(sweeps.sweep("optim.lr", [2e-4, 1e-4]), "optim.lr") == [
      ("", [1, 0])]
  # Three axes: the combination of the two others; keys sharing a last name stay whole.
  three = sweeps.product(sweeps.sweep("optim.eps", [1e-8, 1e-6]),
                         sweeps.sweep("diffusion.eps", [0.5]),
                         sweeps.sweep("data.dataset", ["a", "b"]))
  assert summary.colour_groups(three, "optim.eps") == [
      ("diffusion.eps=0.5, dataset=a", [0, 2]), ("diffusion.eps=0.5, dataset=b", [1, 3])]
  # A chain: points that leave a key to the config; values that are not numbers drop out.
  chained = sweeps.chain(sweeps.sweep("optim.lr", [1e-3, 2e-3]),
                         sweeps.product(sweeps.sweep("optim.lr", [1e-3]),
                                        sweeps.sweep("training.seed", [3])),
                         sweeps.sweep("optim.lr", ["high", True]))
  assert summary.colour_groups(chained, "optim.lr") == [("seed=(base)", [0, 1]),
                                                        ("seed=3", [2])]


def _fake_sweep(sweep_dir, config, points, statuses=None):
  """A sweep DIR as training leaves it, without training: the ledger, and each started
  point's config.json and metrics.jsonl (10 rows)."""
  from diffusion.io import workdir as runs  # pylint: disable=import-outside-toplevel
  names = sweeps.point_names(points)
  sweep_dir.mkdir(parents=True, exist_ok=True)
  ledger = sweeps.Ledger.open(str(sweep_dir), "configs/fake.py", "fake", {}, names, points)
  for i, (name, point) in enumerate(zip(names, points)):
    status = statuses[i] if statuses else "done"
    if status != "pending":
      folder = sweep_dir / name
      folder.mkdir()
      (folder / "config.json").write_text(runs.config_json(grid.point_config(config, point)))
      rows = [{"step": s, "loss": 1.0 + i + 10.0 / s} for s in range(10, 101, 10)]
      rows[-1]["eval/fid"] = 50.0 - i
      (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ledger.set(name, status)
  return names


def test_loss_changing_keys_from_the_points_configs():
  ncsn = importlib.import_module("configs.ncsn.toy_mixture").get_config()
  ddpm = toy_file_config()

  def keys(config, points, started=True):
    return summary.loss_changing_keys(points, [
        trees.flatten(grid.point_config(config, p).to_dict(), sep=".") if started
        else None for p in points])

  sigmas = importlib.import_module("configs.ncsn.toy_mixture").sweep_sigmas()
  assert keys(ncsn, sigmas) == ["diffusion.sigma_max", "diffusion.num_timesteps"]
  assert keys(ddpm, sweeps.parse_grid("optim.lr=1e-4,2e-4;training.seed=0,1")) == []
  assert keys(ddpm, sweeps.parse_grid("training.batch_size=64,128;model.hidden_dims=(32,),(64,)")) == []
  assert keys(ddpm, sweeps.parse_grid("diffusion.schedule=cosine,linear")) == ["diffusion.schedule"]
  assert keys(ddpm, sweeps.parse_grid("diffusion.loss_weighting=none,snr")) == [
      "diffusion.loss_weighting"]
  assert keys(ddpm, sweeps.parse_grid("data.centered=True,False")) == ["data.centered"]
  # One value for every point: the loss still compares.
  assert keys(ddpm, sweeps.parse_grid("diffusion.schedule=cosine;optim.lr=1e-4,2e-4")) == []
  # A field only some losses or processes read: the σ ladder of a VP process, λ of mse.
  assert keys(ddpm, sweeps.parse_grid("diffusion.sigma_max=2.0,4.0")) == []
  assert keys(ddpm, sweeps.parse_grid("diffusion.hybrid_lambda=0.001,0.01")) == []
  hybrid = toy_file_config(**{"diffusion.loss": "hybrid", "diffusion.var_type": "learned_range",
                              "diffusion.decoder": "gaussian", "model.out_channels": 4})
  assert keys(hybrid, sweeps.parse_grid("diffusion.hybrid_lambda=0.001,0.01")) == [
      "diffusion.hybrid_lambda"]
  # No config.json yet: every listed field counts.
  assert keys(ddpm, sweeps.parse_grid("diffusion.sigma_max=2.0,4.0"), started=False) == [
      "diffusion.sigma_max"]
  with pytest.raises(ValueError, match="one config"):
    summary.loss_changing_keys([{"optim.lr": 1.0}], [])


def test_summary_says_when_the_loss_is_not_comparable(tmp_path):
  ncsn = importlib.import_module("configs.ncsn.toy_mixture")
  _fake_sweep(tmp_path / "sigmas", ncsn.get_config(), ncsn.sweep_sigmas())
  text = sweeps.summarize(str(tmp_path / "sigmas"), plots=False)
  label = "not comparable across points: sweeps diffusion.sigma_max, diffusion.num_timesteps"
  first, table = text.split("\n\n", 1)
  assert first.startswith("The training loss is not comparable across points") and \
      "diffusion.sigma_max, diffusion.num_timesteps" in first
  assert table.splitlines()[0].startswith(f"| point | status | overrides | steps | final_loss "
                                          f"({label}) |")
  assert (tmp_path / "sigmas" / "summary.md").read_text() == text + "\n"
  assert (tmp_path / "sigmas" / "summary.csv").read_text().splitlines()[0].split(",")[4] == \
      "final_loss"
  lr = sweeps.parse_grid("optim.lr=1e-4,2e-4;training.seed=0,1")
  _fake_sweep(tmp_path / "lr", toy_file_config(), lr)
  text = sweeps.summarize(str(tmp_path / "lr"), plots=False)
  assert "comparable" not in text
  assert text.splitlines()[0].startswith("| point | status | overrides | steps | final_loss |")


def test_summary_plots_colour_by_the_other_keys_and_label_the_loss(tmp_path, monkeypatch):
  pytest.importorskip("matplotlib")
  import matplotlib.figure  # pylint: disable=import-outside-toplevel
  drawn = {}
  real_savefig = matplotlib.figure.Figure.savefig

  def savefig(fig, path, **kw):   # what each plot says, not its pixels
    ax = fig.axes[0]
    legend = ax.get_legend()
    drawn[os.path.basename(path)] = {
        "title": ax.get_title(),
        "legend": [t.get_text() for t in legend.get_texts()] if legend else [],
        "colours": {tuple(line.get_color()) for line in ax.lines if len(line.get_xdata())}}
    return real_savefig(fig, path, **kw)

  monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
  ncsn = importlib.import_module("configs.ncsn.toy_mixture")
  points = ncsn.sweep_sigmas()
  statuses = ["done"] * 4 + ["failed", "pending"]
  _fake_sweep(tmp_path, ncsn.get_config(), points, statuses)
  sweeps.summarize(str(tmp_path))
  label = "not comparable across points: sweeps diffusion.sigma_max, diffusion.num_timesteps"
  assert set(drawn) == {"loss_curves.png", "final_loss_vs_diffusion.sigma_max.png",
                        "final_loss_vs_diffusion.num_timesteps.png",
                        "eval-fid_vs_diffusion.sigma_max.png",
                        "eval-fid_vs_diffusion.num_timesteps.png"}
  assert label in drawn["loss_curves.png"]["title"]
  vs_sigma = drawn["final_loss_vs_diffusion.sigma_max.png"]
  assert label in vs_sigma["title"]
  assert vs_sigma["legend"] == ["num_timesteps=5", "num_timesteps=10", "failed"]
  assert len(vs_sigma["colours"]) == 2                       # a line per L
  assert drawn["final_loss_vs_diffusion.num_timesteps.png"]["legend"] == [
      "sigma_max=10", "sigma_max=20", "sigma_max=40", "failed"]
  assert "comparable" not in drawn["eval-fid_vs_diffusion.sigma_max.png"]["title"]
  # One swept axis: one colour, and no legend to read.
  drawn.clear()
  _fake_sweep(tmp_path / "one", toy_file_config(), sweeps.parse_grid("optim.lr=1e-4,2e-4,4e-4"))
  sweeps.summarize(str(tmp_path / "one"))
  one = drawn["final_loss_vs_optim.lr.png"]
  assert one["legend"] == [] and len(one["colours"]) == 1 and "comparable" not in one["title"]


def test_summary_without_matplotlib_writes_the_tables_and_says_so(tmp_path, monkeypatch):
  _fake_sweep(tmp_path, toy_file_config(), sweeps.parse_grid("optim.lr=1e-4,2e-4"))
  monkeypatch.setitem(sys.modules, "matplotlib", None)   # as in a `pip install .` venv
  text = sweeps.summarize(str(tmp_path))
  assert text.splitlines()[-1].startswith("No plots: plots (sweep summaries") and \
      "pip install '.[plots]'" in text
  assert (tmp_path / "summary.md").read_text() == text + "\n"
  assert (tmp_path / "summary.csv").exists() and not glob.glob(str(tmp_path / "*.png"))


# ---- the ledger ---------------------------------------------------------------------------


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


@pytest.mark.slow
def test_sequential_sweep_killed_mid_point_resumes_bit_exactly(tmp_path):
  sweep_dir = tmp_path / "sweep"
  args = [f"--config={TOY_FILE}", f"--workdir={sweep_dir}", "--progress=false",
          "--sweep=training.seed=0,1,2", "--config.training.num_train_steps=300",
          "--config.training.checkpoint_every=20", "--config.training.log_every=20"]
  proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  second = sweep_dir / "seed=1"
  deadline = time.time() + 300
  while time.time() < deadline and not (saved_steps(second) and max(saved_steps(second)) >= 60):
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  ledger = sweeps.read_ledger(str(sweep_dir))
  assert [p["status"] for p in ledger["points"]] == ["done", "running", "pending"]
  first_mtime = os.path.getmtime(sweep_dir / "seed=0" / "metrics.jsonl")
  res = run_train(*args)
  assert res.returncode == 0, res.stderr[-2000:]
  assert "seed=0 is done, skipped" in res.stdout and "resumed from step" in res.stdout
  assert os.path.getmtime(sweep_dir / "seed=0" / "metrics.jsonl") == first_mtime
  ledger = sweeps.read_ledger(str(sweep_dir))
  assert [p["status"] for p in ledger["points"]] == ["done"] * 3
  # The interrupted point equals an uninterrupted run of the same config, bit for bit.
  from diffusion.train.loop import train  # pylint: disable=import-outside-toplevel
  cfg = toy_file_config(**{"training.seed": 1, "training.num_train_steps": 300,
                           "training.checkpoint_every": 20, "training.log_every": 20})
  train(cfg, str(tmp_path / "straight"), progress=False)
  s1, p1, e1 = read_state(str(second), cfg)
  s2, p2, e2 = read_state(str(tmp_path / "straight"), cfg)
  assert s1 == s2 == 300
  assert_trees_equal(p1, p2)
  assert_trees_equal(e1, e2)
  assert [r["step"] for r in read_metrics(str(second))] == list(range(20, 301, 20))


# ---- populations ------------------------------------------------------------------------------

# log_every 4: 10 rows, as many as a short sweep point logs (grid.point_config).
VMAP_STEPS = {"training.num_train_steps": 40, "training.log_every": 4,
              "training.checkpoint_every": 20}
GRID = "optim.lr=5e-4,1e-3,2e-3,4e-3;training.seed=0,1"   # 4 learning rates x 2 seeds
# float32, different op order under vmap: |Δparam| of 40 Adam steps measured 3e-7.
POPULATION_ATOL = 2e-5


@pytest.mark.slow
def test_vmap_population_equals_sequential_points(tmp_path):
  cfg = toy_file_config(**VMAP_STEPS)
  sweeps.run_sweep(cfg, TOY_FILE, GRID, str(tmp_path / "vmap"), mode="vmap")
  sweeps.run_sweep(cfg, TOY_FILE, GRID, str(tmp_path / "seq"), mode="sequential")
  ledger = sweeps.read_ledger(str(tmp_path / "vmap"))
  assert [p["status"] for p in ledger["points"]] == ["done"] * 8
  for p in ledger["points"]:
    point_cfg = sweeps.apply_overrides(cfg, p["overrides"])
    s1, p1, e1 = read_state(str(tmp_path / "vmap" / p["name"]), point_cfg)
    s2, p2, e2 = read_state(str(tmp_path / "seq" / p["name"]), point_cfg)
    assert s1 == s2 == 40
    for a, b in zip(jax.tree.leaves((p1, e1)), jax.tree.leaves((p2, e2))):
      np.testing.assert_allclose(a, b, rtol=0, atol=POPULATION_ATOL)
    rows_v = read_metrics(str(tmp_path / "vmap" / p["name"]))
    rows_s = read_metrics(str(tmp_path / "seq" / p["name"]))
    assert [r["step"] for r in rows_v] == [r["step"] for r in rows_s] == list(range(4, 41, 4))
    assert saved_steps(tmp_path / "vmap" / p["name"]) == [20, 40]
    np.testing.assert_allclose([r["lr"] for r in rows_v], [r["lr"] for r in rows_s], rtol=1e-6)


@pytest.mark.slow
def test_vmap_on_8_devices_equals_1_device(tmp_path):
  script = f"""
import json, sys
sys.path.insert(0, {REPO!r}); sys.path.insert(0, {os.path.join(REPO, 'tests')!r})
import jax, numpy as np
assert jax.device_count() == 8
from test_sweeps import toy_file_config, VMAP_STEPS, GRID, TOY_FILE
from test_training import read_state
from diffusion import sweeps
from diffusion.train.population import train_population
cfg = toy_file_config(**VMAP_STEPS)
points = sweeps.prepare(cfg, TOY_FILE, GRID)
cfgs = [p["config"] for p in points]
train_population(cfgs, [{str(tmp_path)!r} + "/d8/" + p["name"] for p in points], progress=False)
train_population(cfgs, [{str(tmp_path)!r} + "/d1/" + p["name"] for p in points], progress=False,
                 devices=jax.devices()[:1])
err = 0.0
for p in points:
  _, a, _ = read_state({str(tmp_path)!r} + "/d8/" + p["name"], p["config"])
  _, b, _ = read_state({str(tmp_path)!r} + "/d1/" + p["name"], p["config"])
  err = max(err, max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(a),
                                                                   jax.tree.leaves(b))))
print(json.dumps({{"max_param_diff": err}}))
"""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                       cwd=REPO, timeout=600)
  assert res.returncode == 0, res.stderr[-3000:]
  assert json.loads(res.stdout.strip().splitlines()[-1])["max_param_diff"] < 1e-5


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_jax_distributed_two_processes_match_one(tmp_path):
  """Two processes joined by jax.distributed (coordinator on 127.0.0.1, one CPU device
  each) train a single run and a population to the parameters of one process with two
  devices: the multi-host path."""
  steps = [f"--config={TOY_FILE}", "--config.training.num_train_steps=40",
           "--config.training.log_every=10", "--config.training.checkpoint_every=20",
           "--config.training.batch_size=32", "--progress=false"]
  single = "--sweep=optim.lr=1e-3,2e-3;training.seed=3"
  cases = {"run": [], "population": [single, "--sweep_mode=vmap"]}
  for name, extra in cases.items():
    port = _free_port()
    procs = [subprocess.Popen(
        [sys.executable, "train.py", *steps, *extra, f"--workdir={tmp_path / 'two' / name}",
         "--distributed", f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
         f"--process_id={i}"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=dict(os.environ, JAX_PLATFORMS="cpu",
                            XLA_FLAGS="--xla_force_host_platform_device_count=1"))
             for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert "devices: 2 x cpu" in outs[0][0] and "2 process(es)" in outs[0][0]
    res = run_train(*steps, *extra, f"--workdir={tmp_path / 'one' / name}",
                    env=dict(JAX_PLATFORMS="cpu",
                             XLA_FLAGS="--xla_force_host_platform_device_count=2"))
    assert res.returncode == 0, res.stderr[-2000:]
  cfg = toy_file_config(**{"training.batch_size": 32})
  grid = sweeps.parse_grid(single[len("--sweep="):])
  pairs = [("run", cfg)] + [(os.path.join("population", n), sweeps.apply_overrides(cfg, p))
                            for n, p in zip(sweeps.point_names(grid), grid)]
  for rel, point_cfg in pairs:
    s1, p1, e1 = read_state(str(tmp_path / "two" / rel), point_cfg)
    s2, p2, e2 = read_state(str(tmp_path / "one" / rel), point_cfg)
    assert s1 == s2 == 40, rel
    for a, b in zip(jax.tree.leaves((p1, e1)), jax.tree.leaves((p2, e2))):
      np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
  assert [p["status"] for p in sweeps.read_ledger(str(tmp_path / "two" / "population"))[
      "points"]] == ["done", "done"]


# ---- Ray ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ray_sweep_runs_three_points_and_retries_a_killed_task(tmp_path):
  pytest.importorskip("ray")
  sweep_dir = tmp_path / "ray"
  args = [f"--config={TOY_FILE}", f"--workdir={sweep_dir}", "--progress=false",
          "--sweep=training.seed=0,1,2", "--sweep_mode=ray",
          "--config.training.num_train_steps=600", "--config.training.checkpoint_every=50",
          "--config.training.log_every=50"]
  proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=REPO, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  victim = sweep_dir / "seed=0"
  deadline = time.time() + 300
  while time.time() < deadline and not (saved_steps(victim) and 50 <= max(saved_steps(victim)) < 600):
    time.sleep(0.05)
  holder = open(victim / ".lock").read().split()
  assert holder[0] == "pid", holder
  os.kill(int(holder[1]), signal.SIGKILL)          # the worker running the point dies
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  points = sweeps.read_ledger(str(sweep_dir))["points"]
  assert [p["status"] for p in points] == ["done"] * 3, points
  assert all(p["final"]["step"] == 600 for p in points)
  assert [r["step"] for r in read_metrics(str(victim))] == list(range(50, 601, 50))
  assert "resumed from step" in out + err           # the retried task resumed the point

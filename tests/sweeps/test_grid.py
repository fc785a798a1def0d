"""diffusion/sweeps/grid.py: sweep definitions, the command-line grid, point names, every
shipped sweep, and short points' logging (which trains the same point)."""

import glob
import importlib
import os

import pytest

from diffusion import sweeps
from diffusion.config import checks
from diffusion.errors import ConfigError
from diffusion.io.metric_writers import read_metrics
from diffusion.sweeps import grid
from diffusion.paths import REPO

from tests.train.test_loop import assert_same_final_state



TOY_FILE = "configs/ddpm/toy_mixture.py"


def toy_file_config(**overrides):
  """configs/ddpm/toy_mixture.py as the command line loads it, shortened."""
  config = importlib.import_module("configs.ddpm.toy_mixture").get_config()
  for key, value in overrides.items():
    section, field = key.split(".")
    config[section][field] = value
  return config


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


@pytest.mark.parametrize("grid, message", [
    ("optim.lr=", "empty key or value"), ("optim.lr=1e-3,,2e-3", "empty key or value"),
    ("optim.lr=1e-3,nan", "optim.lr=nan is not a finite number")])
def test_grid_empty_and_nan_values_are_refused(grid, message):
  from diffusion.sweeps.grid import parse_grid
  with pytest.raises(ConfigError, match=message):
    parse_grid(grid)


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


# ---- short points log often enough to draw a curve ------------------------------------------


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

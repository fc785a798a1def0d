"""diffusion/sweeps/spaces.py: a search's space from a config function or the command
line, bad spaces in one line, every shipped search valid."""

import glob
import importlib
import os

import pytest

from diffusion import sweeps
from diffusion.errors import ConfigError
from diffusion.sweeps import search_settings, spaces

pytest.importorskip("optuna")
# pylint: disable=wrong-import-position
from diffusion.sweeps import trials  # noqa: E402
from diffusion.paths import REPO



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

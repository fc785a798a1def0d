"""diffusion/sweeps/search_settings.py: the search flags' conflicts, and the flags checked
against the config and the space."""

import pytest

from diffusion.errors import ConfigError
from diffusion.sweeps import search_settings

pytest.importorskip("optuna")

from tests.sweeps.test_grid import toy_file_config
from tests.sweeps.test_trials import STEPS


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


@pytest.mark.parametrize("given, logged", [
    ("eval/classifier_fid/cfid", "eval/cfid"),          # the evaluator's section, then its key
    ("eval/bpd/bpd_se", "eval/bpd_se"),
    ("eval/heldout_loss/heldout_loss", "eval/heldout_loss"),
    ("eval/cfid", "eval/cfid"), ("loss", "loss"),
    ("eval/nope/cfid", "eval/nope/cfid"),               # not an evaluator: left to be refused
])
def test_a_metric_may_name_its_evaluator(given, logged):
  assert search_settings.SearchSettings(metric=given).metric == logged


def test_a_metric_that_names_its_evaluator_is_ranked_as_the_evaluator_declares():
  settings = search_settings.SearchSettings(metric="eval/classifier_fid/confident")
  assert settings.mode(("eval/confident",)) == "max"     # classifier_fid maximises it

"""diffusion/config/schema.py: typed sections that take a dict, a ConfigDict or the
dataclass; every field documented; an unknown key, a bad value or a bad combination is
one line naming the field the user wrote."""

import dataclasses

import jax
import ml_collections
import numpy as np
import pytest

import diffusion
from configs import base
from diffusion.config import DiffusionConfig, DiffusionRunConfig
from diffusion.config import checks
from diffusion.errors import ConfigError


def test_every_field_has_a_doc_and_a_valid_default():
  docs = DiffusionRunConfig.field_docs()
  assert all(docs.values()), [k for k, v in docs.items() if not v]
  assert "diffusion.num_timesteps" in docs and "eval.bpd.every" in docs


@pytest.mark.parametrize("call, key, suggestion", [
    (lambda cfg: diffusion.make_process(cfg), "num_timestep", "num_timesteps"),
    (lambda cfg: diffusion.make_model(cfg), "ch_mul", "ch_mult"),
    (lambda cfg: diffusion.make_source(cfg), "datset", "dataset"),
    (lambda cfg: diffusion.sample(lambda x, t: x, diffusion.make_process(), (2, 2),
                                  jax.random.PRNGKey(0), cfg), "num_step", "num_steps"),
])
@pytest.mark.parametrize("kind", ["dict", "ConfigDict"])
def test_unknown_key_is_one_line_with_the_closest_name(call, key, suggestion, kind):
  cfg = {key: 50}
  if kind == "ConfigDict":
    cfg = ml_collections.ConfigDict(cfg)
  with pytest.raises(ConfigError) as info:
    call(cfg)
  message = str(info.value)
  assert key in message and f"did you mean {suggestion!r}" in message and "\n" not in message


def test_a_misspelt_key_does_not_fall_back_to_the_default():
  with pytest.raises(ConfigError, match=r"diffusion\.num_timestep .*'num_timesteps'"):
    diffusion.make_process({"schedule": "cosine", "num_timestep": 50})
  assert diffusion.make_process({"schedule": "cosine", "num_timesteps": 50}).num_timesteps == 50


def test_sections_accept_dict_configdict_and_dataclass():
  as_dict = {"variant": "ncsn", "num_timesteps": 5, "sigma_max": 2.0}
  typed = DiffusionConfig.parse(as_dict)
  for cfg in (as_dict, ml_collections.ConfigDict(as_dict), typed):
    p = diffusion.make_process(cfg)
    np.testing.assert_allclose(np.asarray(p.sigmas), np.geomspace(0.01, 2.0, 5), rtol=1e-6)
  with pytest.raises(dataclasses.FrozenInstanceError):
    typed.num_timesteps = 7  # sections are frozen


# ---- every bad value caught before anything compiles ----------------------------------------


BAD_VALUES = [
    # numbers that must be finite and positive
    ("optim.lr", float("inf")), ("optim.lr", float("nan")), ("optim.lr", 0.0),
    ("optim.eps", -1e-8), ("diffusion.sigma_max", float("inf")), ("diffusion.cosine_s", 0.0),
    ("sampling.step_size", -1.0),
    # ranges
    ("model.dropout", 1.0), ("model.dropout", -0.1), ("training.ema_decay", 1.0),
    ("optim.beta1", 1.0), ("optim.beta2", -0.5), ("optim.decay_rate", -1.0),
    ("optim.decay_rate", 0.0), ("optim.weight_decay", -1.0), ("optim.grad_clip", -1.0),
    ("diffusion.beta_end", 1.5), ("diffusion.hybrid_lambda", -0.1), ("sampling.eta", -0.1),
    # counts >= 1 (or >= 0)
    ("training.num_samples", 0), ("training.num_samples", -4), ("training.batch_size", 0),
    ("training.seed", -1), ("training.log_every", 0), ("training.keep_checkpoints", 0),
    ("training.steps_per_call", 0), ("training.sample_every", -1), ("model.ch", 0),
    ("model.num_res_blocks", 0), ("diffusion.num_timesteps", 0), ("optim.warmup_steps", -1),
    ("sampling.n_steps_each", 0), ("eval.bpd.num_examples", 0), ("eval.fid.num_samples", 1),
    # types
    ("model.ch_mult", 2), ("model.attn_resolutions", 16), ("training.batch_size", 2.5),
    ("data.random_flip", "yes"), ("training.num_train_steps", True),
]
BAD_COMBINATIONS = [
    ({"diffusion.beta_start": 0.03}, "diffusion.beta_start"),          # above beta_end
    ({"optim.min_lr": 1.0}, "optim.min_lr"),                           # above lr
    ({"optim.decay_steps": 100}, "optim.decay_steps"),                 # constant schedule
    ({"optim.weight_decay": 0.1}, "optim.weight_decay"),               # adam has none
    ({"diffusion.variant": "ncsn", "diffusion.schedule": "geometric",
      "diffusion.sigma_min": 2.0}, "diffusion.sigma_min"),             # above sigma_max
    ({"training.log_every": 3, "training.steps_per_call": 2}, "training.log_every"),
    ({"eval.bpd.every": 3, "training.steps_per_call": 2}, "eval.bpd.every"),
    ({"eval.fid.every": 10}, "eval.fid.every"),                        # no weights
]


def _set(config, key, value):
  node = config
  *parents, name = key.split(".")
  for p in parents:
    node = node[p]
  node[name] = value


@pytest.mark.parametrize("key,value", BAD_VALUES, ids=[f"{k}={v!r}" for k, v in BAD_VALUES])
def test_bad_value_names_its_field(key, value):
  config = base.get_config("ddpm")
  with config.ignore_type():
    _set(config, key, value)
  with pytest.raises(ConfigError) as info:
    checks.validate(config)
  message = str(info.value)
  assert message.startswith(key + "=") and "\n" not in message, message


@pytest.mark.parametrize("overrides,field", BAD_COMBINATIONS,
                         ids=[",".join(o) for o, _ in BAD_COMBINATIONS])
def test_bad_combination_names_the_field_the_user_wrote(overrides, field):
  config = base.get_config("ddpm")
  for key, value in overrides.items():
    _set(config, key, value)
  with pytest.raises(ConfigError) as info:
    checks.validate(config)
  assert str(info.value).startswith(field) and "\n" not in str(info.value)

"""diffusion/config/checks.py: validate names the field of a bad value or of two valid
values that do not go together (devices, sampler, loss, network, data), and checks the
training grids' sampler where it is set."""

import pytest

from configs import base
from diffusion.config import checks
from diffusion.errors import ConfigError


INVALID = [
    ("diffusion.variant", "vdm", "diffusion.variant"),
    ("diffusion.schedule", "cosinus", "diffusion.schedule"),
    ("diffusion.num_timesteps", 0, "diffusion.num_timesteps"),
    ("diffusion.loss", "l1", "diffusion.loss"),
    ("diffusion.var_type", "learned", "diffusion.var_type"),
    ("data.dataset", "imagenet21k", "data.dataset"),
    ("model.name", "transformer", "model.name"),
    ("model.attn_resolutions", (7,), "model.attn_resolutions"),
    ("model.out_channels", 5, "model.out_channels"),
    ("model.dtype", "float16", "model.dtype"),
    ("optim.lr", -1e-4, "optim.lr"),
    ("optim.optimizer", "sgd", "optim.optimizer"),
    ("training.num_train_steps", 0, "training.num_train_steps"),
    ("training.batch_size", 100, "training.batch_size"),  # 100 % 8 devices
    ("training.ema_decay", 1.5, "training.ema_decay"),
    ("sampling.method", "euler", "sampling.method"),
    ("data.image_size", 36, "data.image_size"),  # not divisible by 2^3
]
# Valid alone, invalid together: (overrides, field named in the message).
INVALID_COMBINATIONS = [
    ({"sampling.var_type": "bogus"}, "sampling.var_type"),
    ({"sampling.num_steps": 5000}, "sampling.num_steps"),
    ({"sampling.method": "annealed_langevin", "sampling.num_steps": 10}, "sampling.num_steps"),
    ({"diffusion.loss": "hybrid"}, "diffusion.loss"),            # fixedlarge variance
    ({"model.name": "mlp"}, "model.name"),                       # on CIFAR-10 images
    ({"data.dataset": "swiss_roll", "data.num_channels": 2}, "model.name"),  # U-Net on 2-D
    ({"diffusion.schedule": "jsd", "diffusion.loss": "kl", "diffusion.var_type":
      "learned_range", "model.out_channels": 6}, "diffusion.schedule"),
    ({"diffusion.loss": "kl", "data.uniform_dequantization": True}, "diffusion.decoder"),
    ({"diffusion.variant": "ncsn", "diffusion.schedule": "geometric",
      "diffusion.loss": "kl"}, "diffusion.loss"),
]


def _set(config, overrides):
  for key, value in overrides.items():
    section, name = key.split(".")
    config[section][name] = value
  return config


@pytest.mark.parametrize("key,value,field", INVALID, ids=[i[0] for i in INVALID])
def test_invalid_config_names_the_field(key, value, field):
  config = _set(base.get_config("ddpm"), {key: value})
  with pytest.raises(ConfigError) as info:
    checks.validate(config, num_devices=8)
  message = str(info.value)
  assert field in message and "\n" not in message


@pytest.mark.parametrize("overrides,field", INVALID_COMBINATIONS,
                         ids=[",".join(o) for o, _ in INVALID_COMBINATIONS])
def test_invalid_combination_names_the_field(overrides, field):
  config = _set(base.get_config("ddpm"), overrides)
  with pytest.raises(ConfigError) as info:
    checks.validate(config, num_devices=1)
  message = str(info.value)
  assert field in message and "\n" not in message


# ---- the training grids' sampler ------------------------------------------------------------


def test_grid_sampler_is_checked_where_it_is_set():
  """training.grid_steps is checked against the process like sampling.num_steps, and the
  error names the grid's field; sample.py's config.sampling is untouched by it."""
  from diffusion.config import checks, grid_sampling
  from tests.train.test_loop import toy_config
  c = checks.validate(toy_config())
  assert (grid_sampling(c).method, grid_sampling(c).num_steps) == ("ddim", 50)
  assert (c.sampling.method, c.sampling.num_steps) == ("ancestral", 0)
  short = checks.validate(toy_config(**{"training.grid_steps": 500}))   # T = 100 levels
  assert grid_sampling(short).num_steps == 100
  with pytest.raises(ConfigError, match=r"^training\.grid_steps=3 is not valid for "
                     r"annealed_langevin.*training\.grid_method='annealed_langevin'"):
    checks.validate(toy_config(**{"training.grid_method": "annealed_langevin",
                                  "training.grid_steps": 3}))
  with pytest.raises(ConfigError, match="training.grid_method='fast'"):
    checks.validate(toy_config(**{"training.grid_method": "fast"}))

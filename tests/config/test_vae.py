"""diffusion/config/vae.py: the VAE sections' rules, one line each."""

import pytest

from diffusion.config import checks
from diffusion.errors import ConfigError

from tests.families.test_vae import tiny_config


def test_vae_config_errors_are_one_line():
  bad = [
      ({"data.centered": True}, "data.binarize"),
      ({"model.latent_dim": 0}, "model.latent_dim"),
      ({"vae.objective": "iwae", "vae.kl_weight": 2.0}, "vae.kl_weight"),
      ({"vae.num_samples": 0}, "vae.num_samples"),
      ({"sampling.output": "median"}, "sampling.output"),
      ({"eval.elbo.iw_samples": 0}, "eval.elbo.iw_samples"),
  ]
  for overrides, field in bad:
    config = tiny_config(**{k: v for k, v in overrides.items() if k.count(".") == 1})
    for k, v in overrides.items():
      if k.count(".") == 2:
        a, b, c = k.split(".")
        config[a][b][c] = v
    with pytest.raises(ConfigError) as info:
      checks.validate(config)
    assert field in str(info.value) and "\n" not in str(info.value), str(info.value)
  config = tiny_config()
  config.data.dataset = "swiss_roll"
  config.data.num_channels = 2
  config.data.binarize = "none"
  with pytest.raises(ConfigError, match="2-D points"):
    checks.validate(config)

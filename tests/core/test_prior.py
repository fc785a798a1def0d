"""diffusion/core/prior.py: a forward process that never reaches its prior is one warning line
when training starts (VP: alpha_bar_T above 1e-2; VE: sigma_max below the data's spread)."""

import re

import numpy as np
import pytest

from configs.ncsn import toy_mixture
from diffusion.core import prior
from diffusion.train.loop import train

from tests.train.test_loop import toy_config


@pytest.mark.parametrize("overrides, expected", [
    ({"diffusion.schedule": "linear", "diffusion.num_timesteps": 50}, "vp"),
    ({"diffusion.schedule": "scaled_linear", "diffusion.num_timesteps": 50}, None),
    ({}, None),                                  # toy_mixture: cosine, T = 100
])
def test_prior_not_reached_is_one_warning_line(tmp_path, capsys, overrides, expected):
  train(toy_config(**{"training.num_train_steps": 2, **overrides}), str(tmp_path / "w"),
        progress=False)
  warnings = [l for l in capsys.readouterr().err.splitlines() if l.startswith("warning:")]
  if expected is None:
    assert not warnings
    return
  # DDPM's linear beta 1e-4 -> 0.02 over T = 50, in float64: alpha_bar_T = prod(1 - beta).
  abar = float(np.prod(1.0 - np.linspace(1e-4, 0.02, 50, dtype=np.float64)))
  assert len(warnings) == 1 and f"alpha_bar_T = {abar:.3g} > 0.01" in warnings[0]
  assert "diffusion.schedule=scaled_linear" in warnings[0]


def test_ve_sigma_max_below_the_data_spread_is_one_warning_line(tmp_path, capsys):
  # NCSN's mixture 0.8 N((5,5), I) + 0.2 N((-5,-5), I): per coordinate the variance is
  # 1 + 0.8 * 0.2 * 10^2 = 17, so the spread is sqrt(2 * 17) = 5.83. Monte Carlo with
  # 200,000 draws: the standard error of the spread is about 0.01 (the mode share's
  # 8.9e-4, times d(2 Var)/dp = 2 * 100 * (1 - 2p) = -120, over 2 * 5.83); 5 of them allowed.
  rng = np.random.default_rng(0)
  modes = np.where(rng.random(200_000)[:, None] < 0.8, 5.0, -5.0)
  assert abs(prior.data_spread(modes + rng.normal(size=(200_000, 2))) - np.sqrt(34)) < 0.05
  config = toy_mixture.get_config()
  config.training.num_train_steps, config.training.log_every = 2, 2
  config.training.checkpoint_every = 2
  config.diffusion.sigma_max = 4.0
  train(config, str(tmp_path / "low"), progress=False)
  warnings = [l for l in capsys.readouterr().err.splitlines() if l.startswith("warning:")]
  assert len(warnings) == 1 and "sigma_max = 4 is below the data's spread " in warnings[0]
  # The loop measures the spread on 1,000 examples: standard error about 0.14.
  spread = float(re.search(r"spread ([\d.]+)", warnings[0]).group(1))
  assert abs(spread - np.sqrt(34)) < 0.5, spread
  config.diffusion.sigma_max = 20.0
  train(config, str(tmp_path / "high"), progress=False)
  assert "warning:" not in capsys.readouterr().err

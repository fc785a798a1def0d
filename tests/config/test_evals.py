"""The evaluators' sections (diffusion/config/evals.py)."""

import pytest

from configs import base
from diffusion.config import checks
from diffusion.errors import ConfigError


@pytest.mark.parametrize("family, name", [("ddpm", "bpd"), ("ddpm", "ode_bpd"),
                                          ("vae", "elbo")])
def test_a_score_with_a_standard_error_needs_two_examples(family, name):
  """--eval=ode_bpd with num_examples=1 printed "9.0460 +- nan": refused in one
  line naming the field; two are enough."""
  config = base.get_config(family)
  getattr(config.eval, name).num_examples = 1
  with pytest.raises(ConfigError) as e:
    checks.validate(config)
  assert "\n" not in str(e.value) and f"eval.{name}.num_examples=1" in str(e.value)
  getattr(config.eval, name).num_examples = 2
  checks.validate(config)

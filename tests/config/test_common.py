"""diffusion/config/common.py: the common sections' own rules (the training section's
metric writers)."""

import pytest

from diffusion.errors import ConfigError


def test_writers_field_is_validated():
  from configs import base
  from diffusion.config import checks
  cfg = base.get_config()
  cfg.training.writers = "jsonl,tensorbord"
  with pytest.raises(ConfigError, match="training.writers"):
    checks.validate(cfg, num_devices=1)

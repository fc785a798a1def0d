"""diffusion/config/presets.py: each variant's preset is the only difference from its
family's dataclass defaults (configs/base.py builds exactly those)."""

from configs import base
from diffusion.config import RUN_CONFIGS, VARIANT_PRESETS, DiffusionRunConfig, default_config


def test_base_config_is_the_dataclass_defaults():
  assert base.get_config("ddpm").to_dict() == DiffusionRunConfig().to_dict()
  for variant, preset in VARIANT_PRESETS.items():
    built = base.get_config(variant).to_dict()
    assert built == default_config(variant).to_dict()
    # A variant differs from its family's dataclass defaults exactly in its preset's fields.
    defaults = RUN_CONFIGS[preset.get("family", "diffusion")]().to_dict()
    preset = {k: v for k, v in preset.items() if k != "family"}
    changed = {(s, f) for s in built if isinstance(built[s], dict)
               for f in built[s] if built[s][f] != defaults[s][f]}
    assert changed == {(s, f) for s, fields in preset.items() for f in fields
                       if fields[f] != defaults[s][f]}

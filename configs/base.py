"""Shared base config: every field the project reads, with its default.

Built from the typed sections of :mod:`diffusion.config`, where each field's
default, allowed values and checks are defined once. Paper configs
(``configs/<variant>/<dataset>.py``) call :func:`get_config` with their variant
and then change only what their paper changes. Every field can be overridden on
the command line, e.g. ``--config.diffusion.schedule=cosine``; docs/config.md
(the README's config reference) lists them.
"""

import ml_collections

from diffusion import config


def get_config(variant: str = "ddpm") -> ml_collections.ConfigDict:
  """The full default config of ``variant``: ddpm | ncsn | dpm.

  The variant's paper choices (process, schedule, loss, sampler, data range) are
  ``diffusion.config.VARIANT_PRESETS``; everything else is the dataclass defaults.
  """
  return config.to_config_dict(config.default_config(variant))

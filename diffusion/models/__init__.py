"""Networks: the DDPM U-Net, a 2-D MLP, and an exact analytic mixture model.

:func:`make_model` builds the Flax module that ``config.model`` names. Network
modules are called as ``module.apply({'params': p}, x, cond, train=False,
rngs={'dropout': key})`` with x [B, H, W, C] (unet) or [B, D] (mlp) and cond a
float [B] noise-level input; they return float32 [B, ..., out_channels]. The
analytic model has no parameters and is called as
``module.apply({}, x, signal_scale, noise_std)``.
"""

from typing import Any, Callable

import jax.numpy as jnp
import numpy as np

from diffusion.config_fields import get_field
from diffusion.errors import ConfigError, check_choice
from diffusion.models.analytic import AnalyticMixture
from diffusion.models.layers import timestep_embedding
from diffusion.models.mlp import MLP
from diffusion.models.unet import UNet

__all__ = ["make_model", "UNet", "MLP", "AnalyticMixture", "timestep_embedding", "MODELS"]

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
GROUPNORM_GROUPS = 32

# Defaults used when a field is missing from config.model (same as configs/base.py).
_DEFAULTS = dict(
    ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1,
    resamp_with_conv=True, out_channels=3, conditional=True, dtype="float32",
    hidden_dims=(128, 128, 128),
)


def _get(cfg, name: str):
  return get_field(cfg, name, _DEFAULTS.get(name))


def _check_int(field: str, value, minimum: int = 1) -> int:
  ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum
  if not ok:
    raise ConfigError(f"{field}={value!r} is not valid; it must be an integer >= {minimum}.")
  return int(value)


def _check_ints(field: str, value, allow_empty: bool = False) -> tuple[int, ...]:
  """A tuple of positive integers from a list/tuple config value."""
  ok = isinstance(value, (list, tuple)) and (allow_empty or len(value) > 0)
  ok = ok and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
                  for v in value)
  if not ok:
    what = "a" if allow_empty else "a non-empty"
    raise ConfigError(f"{field}={value!r} is not valid; it must be {what} tuple of "
                      f"positive integers.")
  return tuple(int(v) for v in value)


def _check_bool(field: str, value) -> bool:
  if not isinstance(value, bool):
    raise ConfigError(f"{field}={value!r} is not valid; it must be True or False.")
  return value


def _common(model_cfg) -> dict:
  dtype = _get(model_cfg, "dtype")
  check_choice("model.dtype", dtype, DTYPES)
  return dict(out_channels=_check_int("model.out_channels", _get(model_cfg, "out_channels")),
              conditional=_check_bool("model.conditional", _get(model_cfg, "conditional")),
              dtype=DTYPES[dtype])


def _make_unet(model_cfg, data_cfg) -> UNet:
  ch = _check_int("model.ch", _get(model_cfg, "ch"))
  if ch % GROUPNORM_GROUPS:
    raise ConfigError(f"model.ch={ch} is not valid; it must be divisible by "
                      f"{GROUPNORM_GROUPS} (GroupNorm groups).")
  ch_mult = _check_ints("model.ch_mult", _get(model_cfg, "ch_mult"))
  dropout = _get(model_cfg, "dropout")
  if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
    raise ConfigError(f"model.dropout={dropout!r} is not valid; it must be in [0, 1).")
  common = _common(model_cfg)
  if data_cfg is not None:
    size = data_cfg.get("image_size")
    factor = 2 ** (len(ch_mult) - 1)
    if isinstance(size, int) and size % factor:
      raise ConfigError(f"data.image_size={size} is not valid for model.ch_mult={ch_mult}; "
                        f"it must be divisible by 2**(len(ch_mult)-1) = {factor}.")
    channels = data_cfg.get("num_channels")
    if isinstance(channels, int) and common["out_channels"] not in (channels, 2 * channels):
      raise ConfigError(
          f"model.out_channels={common['out_channels']} is not valid; it must be "
          f"data.num_channels={channels} (or {2 * channels} for learned variance).")
  return UNet(
      ch=ch, ch_mult=ch_mult,
      num_res_blocks=_check_int("model.num_res_blocks", _get(model_cfg, "num_res_blocks")),
      attn_resolutions=_check_ints("model.attn_resolutions",
                                   _get(model_cfg, "attn_resolutions"), allow_empty=True),
      dropout=float(dropout),
      resamp_with_conv=_check_bool("model.resamp_with_conv",
                                   _get(model_cfg, "resamp_with_conv")),
      **common)


def _make_mlp(model_cfg, data_cfg) -> MLP:
  del data_cfg
  return MLP(hidden_dims=_check_ints("model.hidden_dims", _get(model_cfg, "hidden_dims")),
             **_common(model_cfg))


def _make_analytic(model_cfg, data_cfg) -> AnalyticMixture:
  del model_cfg
  if data_cfg is None:
    raise ConfigError("model.name='analytic' needs the data config (data.mixture_weights, "
                      "data.mixture_means, data.mixture_stds): call make_model(..., data_cfg=).")
  from diffusion.data import mixture_params  # the data distribution it is exact for
  weights, means, stds = mixture_params(data_cfg)
  return AnalyticMixture.diagonal(weights, means, stds)


# Plain dict from config.model.name to constructor (no import-time registry).
MODELS: dict[str, Callable[[Any, Any], Any]] = {
    "unet": _make_unet, "mlp": _make_mlp, "analytic": _make_analytic,
}


def make_model(model_cfg, *, data_cfg=None):
  """Builds the Flax module that ``model_cfg.name`` names.

  Args:
    model_cfg: ``config.model`` (ConfigDict or dict). Fields read: name, ch, ch_mult,
      num_res_blocks, attn_resolutions, dropout, resamp_with_conv (unet);
      hidden_dims (mlp); out_channels, conditional, dtype (unet, mlp). Missing
      fields take configs/base.py's defaults.
    data_cfg: ``config.data``; required by 'analytic' (mixture_weights,
      mixture_means, mixture_stds); optional for 'unet' (then image_size and
      num_channels are checked against the model).

  Returns:
    A ``flax.linen.Module`` (UNet, MLP or AnalyticMixture).

  Raises:
    ConfigError: one line naming the invalid field.
  """
  name = model_cfg.get("name", "unet")
  check_choice("model.name", name, MODELS)
  return MODELS[name](model_cfg, data_cfg)

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

from diffusion.config import checks as config_check
from diffusion.config import NETWORKS, DataConfig, ModelConfig
from diffusion.errors import ConfigError
from diffusion.data import mixture_params
from diffusion.models.analytic import AnalyticMixture
from diffusion.models.layers import timestep_embedding
from diffusion.models.mlp import MLP
from diffusion.models.unet import UNet

__all__ = ["make_model", "UNet", "MLP", "AnalyticMixture", "timestep_embedding", "MODELS"]

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _make_unet(m: ModelConfig, data: DataConfig | None) -> UNet:
  del data
  return UNet(ch=m.ch, ch_mult=m.ch_mult, num_res_blocks=m.num_res_blocks,
              attn_resolutions=m.attn_resolutions, dropout=m.dropout,
              resamp_with_conv=m.resamp_with_conv, out_channels=m.out_channels,
              conditional=m.conditional, dtype=DTYPES[m.dtype])


def _make_mlp(m: ModelConfig, data: DataConfig | None) -> MLP:
  del data
  return MLP(hidden_dims=m.hidden_dims, out_channels=m.out_channels,
             conditional=m.conditional, dtype=DTYPES[m.dtype])


def _make_analytic(m: ModelConfig, data: DataConfig | None) -> AnalyticMixture:
  del m
  if data is None:
    raise ConfigError("model.name='analytic' needs the data config (data.mixture_weights, "
                      "data.mixture_means, data.mixture_stds): call make_model(..., data_cfg=).")
  return AnalyticMixture.diagonal(*mixture_params(data))


# Plain dict from config.model.name to constructor (no import-time registry).
MODELS: dict[str, Callable[[ModelConfig, Any], Any]] = {
    "unet": _make_unet, "mlp": _make_mlp, "analytic": _make_analytic,
}
assert tuple(MODELS) == NETWORKS, "config.NETWORKS lists the models built here"


def make_model(model_cfg=None, *, data_cfg=None):
  """Builds the Flax module that ``model_cfg.name`` names.

  Args:
    model_cfg: ``config.model`` (ConfigDict, dict or ModelConfig); fields left out
      take the defaults of :class:`diffusion.config.ModelConfig`.
    data_cfg: ``config.data``; required by 'analytic' (data.mixture_*); optional for
      'unet' (then image_size and num_channels are checked against the model).

  Returns:
    A ``flax.linen.Module`` (UNet, MLP or AnalyticMixture).

  Raises:
    ConfigError: one line naming the invalid field.
  """
  m = ModelConfig.parse(model_cfg)
  data = None if data_cfg is None else DataConfig.parse(data_cfg)
  if data is not None:
    config_check.check_model_fits_data(m, data)
  return MODELS[m.name](m, data)

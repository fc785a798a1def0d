"""Typed config sections -> constructor arguments: the one place where that happens.

Below this module nothing reads a config: processes, losses, networks and samplers
take plain numbers and strings. The sections arrive parsed and checked (the entry
point parsed the whole config once), so nothing here re-parses or re-validates.
"""

from typing import Any, Callable, Dict, Optional

import jax
import jax.numpy as jnp

from diffusion.config import DataConfig, DiffusionConfig, ModelConfig
from diffusion.core import model_fn, processes
from diffusion.data import mixture_params
from diffusion.errors import ConfigError
from diffusion.models import MLP, AnalyticMixture, UNet, refinenet

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def make_process(d: DiffusionConfig) -> processes.Process:
  """The forward process of ``config.diffusion``."""
  return processes.make_process(d.process_kind, schedule=d.schedule,
                                num_timesteps=d.num_timesteps, beta_start=d.beta_start,
                                beta_end=d.beta_end, cosine_s=d.cosine_s,
                                sigma_min=d.sigma_min, sigma_max=d.sigma_max)


def _unet(m: ModelConfig, data: Optional[DataConfig], num_levels: int) -> UNet:
  del data, num_levels
  return UNet(ch=m.ch, ch_mult=m.ch_mult, num_res_blocks=m.num_res_blocks,
              attn_resolutions=m.attn_resolutions, dropout=m.dropout,
              resamp_with_conv=m.resamp_with_conv, out_channels=m.out_channels,
              conditional=m.conditional, dtype=DTYPES[m.dtype])


def _mlp(m: ModelConfig, data: Optional[DataConfig], num_levels: int) -> MLP:
  del data, num_levels
  return MLP(hidden_dims=m.hidden_dims, out_channels=m.out_channels,
             conditional=m.conditional, dtype=DTYPES[m.dtype])


def _analytic(m: ModelConfig, data: Optional[DataConfig], num_levels: int) -> AnalyticMixture:
  del m, num_levels
  if data is None:
    raise ConfigError("model.name='analytic' needs the data config (data.mixture_weights, "
                      "data.mixture_means, data.mixture_stds): call make_model(..., data_cfg=).")
  return AnalyticMixture.diagonal(*mixture_params(data))


def _refinenet(m: ModelConfig, data: Optional[DataConfig], num_levels: int):
  """NCSN's conditional RefineNet (one embedding row per level: ``num_levels`` = L) or an
  NCSNv2 RefineNet; the image channels are ``model.out_channels``."""
  del data
  if m.name == "ncsn" and num_levels < 1:
    raise ConfigError("model.name='ncsn' embeds each noise level; build it with num_levels="
                      "diffusion.num_timesteps (make_model(..., num_levels=L)).")
  return refinenet.make_refinenet(m.name, m.ngf, m.out_channels, num_levels, DTYPES[m.dtype])


# Plain dict, config.model.name -> constructor(model section, data section or None,
# number of noise levels). config.NETWORKS is this dict's keys (tests/test_architecture.py).
NETWORKS: Dict[str, Callable[[ModelConfig, Optional[DataConfig], int], Any]] = {
    "unet": _unet, "mlp": _mlp, "analytic": _analytic,
    "ncsn": _refinenet, "ncsnv2": _refinenet, "ncsnv2_deeper": _refinenet,
    "ncsnv2_deepest": _refinenet,
}


def make_model(m: ModelConfig, data: Optional[DataConfig] = None, num_levels: int = 0):
  """The Flax network that ``config.model.name`` names (data: needed by 'analytic';
  num_levels: diffusion.num_timesteps, needed by 'ncsn')."""
  return NETWORKS[m.name](m, data, num_levels)


def make_eps_fn(module, params, process, m: ModelConfig, *, train: bool = False,
                dropout_rng: Optional[jax.Array] = None) -> model_fn.EpsFn:
  """``eps_fn(x_t, t)`` of a network built from ``config.model``."""
  return model_fn.make_eps_fn(module, params, process, cond=m.cond,
                              rescale_inputs=m.rescale_inputs,
                              scale_by_sigma=m.scale_by_sigma, analytic=m.name == "analytic",
                              train=train, dropout_rng=dropout_rng)


def loss_options(d: DiffusionConfig) -> Dict[str, Any]:
  """The keyword arguments of :func:`diffusion.core.losses.training_losses`."""
  return dict(loss=d.loss, var_type=d.var_type, hybrid_lambda=d.hybrid_lambda,
              loss_weighting=d.loss_weighting, clip_x0=d.clip_x0, decoder=d.decoder)

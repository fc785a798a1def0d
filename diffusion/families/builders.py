"""Typed config sections -> constructor arguments: the one place where that happens.

Below this module nothing reads a config: processes, losses, networks and samplers
take plain numbers and strings. The sections arrive parsed and checked (the entry
point parsed the whole config once), so nothing here re-parses or re-validates, and
nothing here names a network or a sampler: each declares the options it takes.
"""

from typing import Any, Dict, Optional

import jax

from diffusion import models, samplers
from diffusion.config import DataConfig, DiffusionConfig, ModelConfig
from diffusion.core import model_fn, processes
from diffusion.data import mixture_params
from diffusion.errors import ConfigError
from diffusion.models.network import CONTEXT


def make_process(d: DiffusionConfig) -> processes.Process:
  """The forward process of ``config.diffusion``."""
  return processes.make_process(d.process_kind, schedule=d.schedule,
                                num_timesteps=d.num_timesteps, beta_start=d.beta_start,
                                beta_end=d.beta_end, cosine_s=d.cosine_s,
                                sigma_min=d.sigma_min, sigma_max=d.sigma_max)


def make_model(m: ModelConfig, data: Optional[DataConfig] = None, num_levels: int = 0):
  """The Flax network that ``config.model.name`` names, from its declared options and
  the context it asks for (data: the mixture of the exact model; num_levels:
  diffusion.num_timesteps, for NCSN's conditional RefineNet)."""
  network = models.NETWORKS[m.name]
  context = {"num_levels": num_levels,
             "mixture": None if data is None else mixture_params(data)}
  for name in network.context:
    if context[name] is None:
      raise ConfigError(f"model.name={m.name!r} needs {CONTEXT[name]}.")
  return network.build(*(context[name] for name in network.context),
                       **{k: getattr(m, k) for k in network.options})


def make_eps_fn(module, params, process, m: ModelConfig, *, train: bool = False,
                dropout_rng: Optional[jax.Array] = None) -> model_fn.EpsFn:
  """``eps_fn(x_t, t)`` of a network built from ``config.model``."""
  return model_fn.make_eps_fn(module, params, process, cond=m.cond,
                              rescale_inputs=m.rescale_inputs,
                              scale_by_sigma=m.scale_by_sigma, train=train,
                              dropout_rng=dropout_rng)


def loss_options(d: DiffusionConfig) -> Dict[str, Any]:
  """The keyword arguments of :func:`diffusion.core.losses.training_losses`."""
  return dict(loss=d.loss, var_type=d.var_type, hybrid_lambda=d.hybrid_lambda,
              loss_weighting=d.loss_weighting, clip_x0=d.clip_x0, decoder=d.decoder)


def sampler_options(s) -> Dict[str, Any]:
  """The keyword options of :func:`diffusion.samplers.sample` in a typed sampling section
  (``method``, ``num_steps``, and every option a registered sampler declares)."""
  return {k: getattr(s, k) for k in samplers.option_names()}

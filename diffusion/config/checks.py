"""Rules that span config sections, checked before anything is built or compiled.

Each section checks its own fields when it is parsed (:mod:`diffusion.config`);
the rules here involve two or more sections (a model that must fit its data, a
loss that needs a decoder, cadences against steps_per_call, ...). Each raises
:class:`diffusion.errors.ConfigError` with one line that names the field and the
fix. ``train.py`` and ``sample.py`` call :func:`validate` first, so a typo costs a
second, not a compile. A plug-in's own rules live in its module and are asked from
here: the network's (``models.NETWORKS[name].fits``) and the sampler's
(``samplers.check``); an evaluator's applicability is its own
(:func:`diffusion.evals.check_applies`, run by the loop before it starts).
"""

import dataclasses
from typing import Optional

from diffusion import models, samplers
from diffusion.config import DataConfig, DiffusionRunConfig, ModelConfig, parse_config
from diffusion.config.vae import VAERunConfig
from diffusion.config import grid_sampling
from diffusion.errors import ConfigError


def validate(config, num_devices: int = 1):
  """Parses ``config`` (every section's own checks) and checks the rules between
  sections; returns the typed config. Raises ConfigError on the first problem."""
  c = parse_config(config)
  if c.training.batch_size % num_devices:
    raise ConfigError(
        f"training.batch_size={c.training.batch_size} is not divisible by the {num_devices} "
        f"devices; use a multiple of {num_devices}.")
  if isinstance(c, VAERunConfig):
    _check_vae(c)
  else:
    _check_diffusion(c)
  _check_eval_cadences(c)
  return c


def check_sampling(sampling, num_timesteps: int) -> None:
  """The chosen sampler's rules on a typed sampling section (``samplers.check``)."""
  samplers.check(num_timesteps, **{k: getattr(sampling, k) for k in samplers.option_names()})


def _check_diffusion(c: DiffusionRunConfig) -> None:
  d, data, m = c.diffusion, c.data, c.model
  _check_combinations(c)
  check_model_fits_data(m, data, d.var_type, d.process_kind)
  if m.cond == "log_sigma" and d.process_kind != "ve":
    raise ConfigError("model.cond='log_sigma' needs a VE process (diffusion.variant=ncsn).")
  if m.rescale_inputs and data.centered:
    raise ConfigError("model.rescale_inputs=True maps [0, 1] data to [-1, 1], but the data are "
                      "already centered (data.centered=True); set one of them to False.")
  if data.binarize != "none":
    raise ConfigError("data.binarize is for the VAE's Bernoulli decoder; diffusion models "
                      "train on 8-bit images (set data.binarize='none').")
  check_sampling(c.sampling, d.num_timesteps)
  if c.training.grid_method:
    try:
      check_sampling(grid_sampling(c), d.num_timesteps)
    except ConfigError as e:
      raise ConfigError(str(e).replace("sampling.num_steps", "training.grid_steps").rstrip(".")
                        + f" (the grids' sampler training.grid_method="
                        f"{c.training.grid_method!r}).") from None


def _check_vae(c: VAERunConfig) -> None:
  """The VAE's Bernoulli decoder models pixels in [0, 1] of an image set."""
  if c.data.is_toy:
    raise ConfigError(f"data.dataset={c.data.dataset!r} is 2-D points; the VAE's Bernoulli "
                      "decoder models images (digits, mnist, fashion_mnist, ...).")
  if c.data.centered:
    raise ConfigError("data.centered=True is not valid for the VAE: its Bernoulli decoder "
                      "models pixels in [0, 1]; set data.centered=False.")


def check_model_fits_data(m: ModelConfig, data: DataConfig, var_type: Optional[str] = None,
                          process_kind: Optional[str] = None) -> None:
  """The network's input and output against the data (and the variance it learns, and
  the process, when known): the network's own rules, then its output channels.

  With ``var_type`` None (no diffusion section known), out_channels may be C or 2C.
  """
  network = models.NETWORKS[m.name]
  if network.fits is not None:
    network.fits(m.to_dict(), data.dataset, data.example_shape, process_kind)
  if "out_channels" not in network.options:   # no output layer to fit (the exact mixture)
    return
  c = data.num_channels
  if data.is_toy and c != data.toy_dim:
    raise ConfigError(f"data.num_channels={c} does not match data.dataset={data.dataset!r}, "
                      f"whose points have {data.toy_dim} dimensions; set "
                      f"data.num_channels={data.toy_dim}.")
  if var_type is None:
    if m.out_channels not in (c, 2 * c):
      raise ConfigError(f"model.out_channels={m.out_channels} is not valid; it must be "
                        f"data.num_channels={c} (or {2 * c} for learned variance).")
  else:
    want = c * (2 if var_type == "learned_range" else 1)
    if m.out_channels != want:
      raise ConfigError(
          f"model.out_channels={m.out_channels} does not fit data.num_channels={c} with "
          f"diffusion.var_type={var_type!r}; set --config.model.out_channels={want}.")


def _check_combinations(c: DiffusionRunConfig) -> None:
  """Process, loss and data choices that are valid alone but not together."""
  d, data = c.diffusion, c.data
  bound = d.loss in ("hybrid", "kl")
  if bound and d.decoder == "discretized" and (data.is_toy or data.uniform_dequantization):
    raise ConfigError(
        "diffusion.decoder='discretized' scores 8-bit pixels, but the data are continuous "
        f"(data.dataset={data.dataset!r}, uniform_dequantization={data.uniform_dequantization}); "
        "set diffusion.decoder='gaussian' or use undequantized images.")
  if d.schedule == "jsd" and (bound or not c.sampling.clip_x0):
    raise ConfigError(
        "diffusion.schedule='jsd' ends at alpha_bar_T = 0, where x0 cannot be recovered from "
        "eps; use it only with loss='mse' and sampling.clip_x0=True, or use 'dpm' (the DPM "
        "code's version, alpha_bar_T ~ 1/T).")


def _check_eval_cadences(c) -> None:
  """Evaluator cadences against the loop (whether each applies is the evaluator's rule)."""
  k = c.training.steps_per_call
  for f in dataclasses.fields(c.eval):
    every = getattr(c.eval, f.name).every
    if every % k:
      raise ConfigError(
          f"eval.{f.name}.every={every} is not a multiple of training.steps_per_call={k}; "
          "events happen between compiled calls.")

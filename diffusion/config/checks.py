"""Rules that span config sections, checked before anything is built or compiled.

Each section checks its own fields when it is parsed (:mod:`diffusion.config`);
the rules here involve two or more sections (a model that must fit its data, a
loss that needs a decoder, cadences against steps_per_call, ...). Each raises
:class:`diffusion.errors.ConfigError` with one line that names the field and the
fix. ``train.py`` and ``sample.py`` call :func:`validate` first, so a typo costs a
second, not a compile.
"""

import dataclasses
from typing import Optional

from diffusion import samplers
from diffusion.config import (REFINENETS, DataConfig, DiffusionRunConfig, ModelConfig,
                              VAERunConfig, grid_sampling, parse_config)
from diffusion.errors import ConfigError


def validate(config, num_devices: int = 1):
  """Parses ``config`` (every section's own checks) and checks the rules between
  sections; returns the typed config. Raises ConfigError on the first problem."""
  c = parse_config(config)
  if c.training.batch_size % num_devices:
    raise ConfigError(
        f"training.batch_size={c.training.batch_size} is not divisible by the {num_devices} "
        f"devices; use a multiple of {num_devices}.")
  if c.family == "vae":
    _check_vae(c)
  else:
    _check_diffusion(c)
  _check_evals(c)
  return c


def _check_diffusion(c: DiffusionRunConfig) -> None:
  d, data, m = c.diffusion, c.data, c.model
  _check_combinations(c)
  check_model_fits_data(m, data, d.var_type)
  if m.name in REFINENETS:
    _check_refinenet(c)
  if m.cond == "log_sigma" and d.process_kind != "ve":
    raise ConfigError("model.cond='log_sigma' needs a VE process (diffusion.variant=ncsn).")
  if m.rescale_inputs and data.centered:
    raise ConfigError("model.rescale_inputs=True maps [0, 1] data to [-1, 1], but the data are "
                      "already centered (data.centered=True); set one of them to False.")
  if data.binarize != "none":
    raise ConfigError("data.binarize is for the VAE's Bernoulli decoder; diffusion models "
                      "train on 8-bit images (set data.binarize='none').")
  samplers.check_num_steps(c.sampling, d.num_timesteps)
  if c.training.grid_method:
    try:
      samplers.check_num_steps(grid_sampling(c), d.num_timesteps)
    except ConfigError as e:
      raise ConfigError(str(e).replace("sampling.num_steps", "training.grid_steps").rstrip(".")
                        + f" (the grids' sampler training.grid_method="
                        f"{c.training.grid_method!r}).") from None


def _check_refinenet(c: DiffusionRunConfig) -> None:
  """The RefineNets read their output as the papers do: NCSN's is the score (the glue
  makes ε = −σ·s), NCSNv2's is σ·score (technique 3, ``model.scale_by_sigma``); both
  see 2x − 1 of [0, 1] data and embed the level index."""
  m, d = c.model, c.diffusion
  if d.process_kind != "ve":
    raise ConfigError(f"model.name={m.name!r} is an NCSN score network; it needs the VE "
                      "process (diffusion.variant='ncsn').")
  v2 = m.name != "ncsn"
  why = ("NCSNv2 technique 3: output/σ is the score" if v2 else
         "the NCSN network outputs the score itself")
  if m.scale_by_sigma != v2:
    raise ConfigError(f"model.scale_by_sigma={m.scale_by_sigma} is not valid with model.name="
                      f"{m.name!r}; set it to {v2} ({why}).")
  if not m.rescale_inputs:
    raise ConfigError(f"model.rescale_inputs=False is not valid with model.name={m.name!r}: "
                      "the RefineNets see 2x − 1 of [0, 1] data; set it to True.")
  if m.cond != "index":
    raise ConfigError(f"model.cond={m.cond!r} is not valid with model.name={m.name!r}, which "
                      "embeds the level index; set model.cond='index'.")


def _check_vae(c: VAERunConfig) -> None:
  """The VAE's Bernoulli decoder models pixels in [0, 1] of an image set."""
  if c.data.is_toy:
    raise ConfigError(f"data.dataset={c.data.dataset!r} is 2-D points; the VAE's Bernoulli "
                      "decoder models images (digits, mnist, fashion_mnist, ...).")
  if c.data.centered:
    raise ConfigError("data.centered=True is not valid for the VAE: its Bernoulli decoder "
                      "models pixels in [0, 1]; set data.centered=False.")


def check_model_fits_data(m: ModelConfig, data: DataConfig,
                          var_type: Optional[str] = None) -> None:
  """The network's input and output against the data (and the variance it learns).

  With ``var_type`` None (no diffusion section known), out_channels may be C or 2C.
  """
  if m.name == "analytic":
    return
  if m.name in REFINENETS and data.is_toy:
    raise ConfigError(f"model.name={m.name!r} is an image network, but data.dataset="
                      f"{data.dataset!r} is 2-D toy data; use model.name='mlp'.")
  if m.name == "unet" and data.is_toy:
    raise ConfigError(f"model.name='unet' needs images, but data.dataset={data.dataset!r} is "
                      "2-D toy data; use model.name='mlp' (or 'analytic').")
  if m.name == "mlp" and not data.is_toy:
    raise ConfigError(f"model.name='mlp' is for 2-D toy data, but data.dataset={data.dataset!r}"
                      " is an image set; use model.name='unet'.")
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
  if m.name in REFINENETS:
    factor = {"ncsn": 2, "ncsnv2": 2, "ncsnv2_deeper": 4, "ncsnv2_deepest": 8}[m.name]
    if data.image_size % factor:
      raise ConfigError(f"data.image_size={data.image_size} is not divisible by {factor}, the "
                        f"down-sampling of model.name={m.name!r}; choose another image size.")
    return
  if m.name != "unet":
    return
  factor = 2 ** (len(m.ch_mult) - 1)
  if data.image_size % factor:
    raise ConfigError(
        f"data.image_size={data.image_size} is not divisible by 2^(len(model.ch_mult)-1)="
        f"{factor} for model.ch_mult={m.ch_mult}; change the image size or use fewer "
        "model.ch_mult levels.")
  resolutions = [data.image_size // 2 ** i for i in range(len(m.ch_mult))]
  for r in m.attn_resolutions:
    if r not in resolutions:
      raise ConfigError(
          f"model.attn_resolutions contains {r}, which is not a U-Net resolution; "
          f"choose from {resolutions}.")


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


def _check_evals(c: DiffusionRunConfig) -> None:
  """Evaluator cadences against the loop, and whether each applies to this run."""
  k = c.training.steps_per_call
  for f in dataclasses.fields(c.eval):
    every = getattr(c.eval, f.name).every
    name = f.name
    if every % k:
      raise ConfigError(
          f"eval.{name}.every={every} is not a multiple of training.steps_per_call={k}; "
          "events happen between compiled calls.")
  if getattr(c.eval, "bpd", None) is not None and c.eval.bpd.every:
    check_bpd_applies(c)
  if getattr(c.eval, "fid", None) is not None and c.eval.fid.every:
    check_fid_applies(c)


def check_bpd_applies(c: DiffusionRunConfig) -> None:
  """ConfigError unless DDPM's bound is defined for this run (VP, 8-bit images in [-1, 1])."""
  if c.diffusion.process_kind != "vp":
    raise ConfigError("bits/dim (eval.bpd, --bpd) applies to VP variants (ddpm, dpm); NCSN's "
                      "VE process has no discrete decoder and no finite prior KL.")
  if c.data.is_toy or not c.data.centered:
    raise ConfigError("bits/dim (eval.bpd, --bpd) scores 8-bit images in [-1, 1] "
                      "(data.centered=True) with DDPM's discretized decoder; this run's data "
                      f"(data.dataset={c.data.dataset!r}, centered={c.data.centered}) does "
                      "not qualify.")


def check_fid_applies(c) -> None:
  """ConfigError unless the run's data are images (FID, IS, KID)."""
  if c.data.is_toy:
    raise ConfigError("FID (eval.fid, --fid) needs image data; this run's data.dataset "
                      f"{c.data.dataset!r} is 2-D points.")

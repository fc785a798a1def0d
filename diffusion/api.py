"""The public Python API: library entry points that parse a config section once.

Every function here accepts a config section as an ``ml_collections.ConfigDict``, a
plain dict or its typed dataclass; it parses and checks it (one line naming a bad
field), then calls the config-free code below it. Inside the package nothing
re-parses: this module, the command lines, sweeps and reproductions are the
entry points.

  load(workdir, step=-1, ema_std_rel=None) -> Run   a trained (or imported) run: config +
                                         EMA params (or a post-hoc EMA of length σ_rel)
  Run.eps(x_t, t)                        the network's ε (diffusion families)
  Run.sample(num, seed=0, **overrides)   samples [num, *example_shape] float32
  Run.encode(x) / Run.decode(z)          the VAE's q(z|x) mean and log-variance, p(x|z)
"""

import dataclasses
import os
from typing import Callable, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from diffusion import families, samplers
from diffusion.config import (DataConfig, DiffusionConfig, ModelConfig, SamplingConfig,
                              checks)
from diffusion.core import losses
from diffusion.errors import ConfigError, did_you_mean
from diffusion.families import builders
from diffusion.io import untrusted
from diffusion.io.workdir import load_config, restore_ema_params
from diffusion.train import posthoc_ema


def make_process(diffusion_cfg=None):
  """The VP or VE process of ``config.diffusion`` (fields left out: the variant's defaults)."""
  return builders.make_process(DiffusionConfig.parse(diffusion_cfg))


def make_model(model_cfg=None, *, data_cfg=None, num_levels: int = 0):
  """The Flax network ``config.model`` names; ``data_cfg`` is checked against it
  (and is required by the analytic mixture model); ``num_levels`` (L =
  diffusion.num_timesteps) is required by NCSN's conditional RefineNet."""
  m = ModelConfig.parse(model_cfg)
  data = None if data_cfg is None else DataConfig.parse(data_cfg)
  if data is not None:
    checks.check_model_fits_data(m, data)
  return builders.make_model(m, data, num_levels)


def make_eps_fn(module, params, process, model_cfg=None, *, train: bool = False,
                dropout_rng: Optional[jax.Array] = None) -> Callable:
  """``eps_fn(x_t, t)`` of ``module`` with ``params`` (reads ``config.model``)."""
  return builders.make_eps_fn(module, params, process, ModelConfig.parse(model_cfg),
                              train=train, dropout_rng=dropout_rng)


def training_losses(process, eps_fn: Callable, x0, t, noise, diffusion_cfg=None, *,
                    hybrid_lambda=None):
  """Per-example losses of ``config.diffusion`` (:func:`diffusion.core.losses.training_losses`)."""
  options = builders.loss_options(DiffusionConfig.parse(diffusion_cfg))
  if hybrid_lambda is not None:
    options["hybrid_lambda"] = hybrid_lambda
  return losses.training_losses(process, eps_fn, x0, t, noise, **options)


def sample(eps_fn: Callable, process, shape: Sequence[int], key: jax.Array, sampling_cfg=None,
           init=None, x0_range: Optional[Tuple[float, float]] = (-1.0, 1.0),
           trajectory_every: int = 0):
  """Samples with ``config.sampling`` (see :func:`diffusion.samplers.sample`); ``init``:
  an optional x_T of ``shape``."""
  options = builders.sampler_options(SamplingConfig.parse(sampling_cfg))
  return samplers.sample(eps_fn, process, shape, key, init, x0_range, trajectory_every,
                         **options)


def make_family(config):
  """The model family of a whole config, parsed and checked once here."""
  return families.make_family(checks.validate(config))


class Run:
  """A loaded run: its typed ``config``, ``family``, EMA ``params`` and their ``step``.

  ``ema_std_rel`` says which EMA ``params`` are: None for the run's own
  (``training.ema_decay``, a checkpoint's), or the σ_rel of a post-hoc EMA reconstructed
  from the run's snapshots at ``step`` (Karras et al. 2024, EDM2, §3).
  """

  def __init__(self, workdir: str, config, family, params, step: int,
               ema_std_rel: Optional[float] = None):
    self.workdir, self.config, self.family = workdir, config, family
    self.params, self.step, self.ema_std_rel = params, step, ema_std_rel

  def __repr__(self):
    ema = "" if self.ema_std_rel is None else f", ema_std_rel={self.ema_std_rel}"
    return (f"Run({self.workdir!r}, family={self.config.family!r}, step={self.step}{ema}, "
            f"example_shape={self.family.example_shape})")

  def _diffusion_only(self, what: str):
    if not hasattr(self.family, "eps_fn"):
      raise ConfigError(f"Run.{what} is for diffusion runs; {self.workdir} is a "
                        f"{self.config.family} run (use encode / decode / sample).")

  def _vae_only(self, what: str):
    if not hasattr(self.family, "encoder"):
      raise ConfigError(f"Run.{what} is for VAE runs; {self.workdir} is a "
                        f"{self.config.family} run.")

  def eps(self, x_t, t) -> jax.Array:
    """The network's ε̂ for x_t [B, H, W, C] (or [B, D]) float32 and integer levels t [B]
    or one level for all (0 = least noise, up to T − 1 = diffusion.num_timesteps − 1).
    Learned-variance models: the ε̂ half of the output. A shape other than the run's
    (channels first, another size), a level that is not an integer in 0..T − 1, or t of
    another length is a ConfigError naming the argument."""
    self._diffusion_only("eps")
    x_t = _examples("Run.eps", "x_t", x_t, self.family.example_shape)
    t = _levels("Run.eps", t, x_t.shape[0], self.family.process.num_timesteps)
    out = self.family.eps_fn(self.params)(x_t, t)
    return out[0] if isinstance(out, tuple) else out

  def sample(self, num: int, seed: int = 0, **sampling_overrides) -> np.ndarray:
    """``num`` samples [num, *example_shape] float32 in model space (images in the data
    range: [-1, 1] centered, else [0, 1]). ``num`` >= 1 and ``seed`` in [0, 2^32) are
    integers; ``sampling_overrides`` replace fields of ``config.sampling``, e.g.
    ``method='ddim', num_steps=50``, checked as ``--config.sampling.*`` is."""
    if not _is_int(num) or num < 1:
      raise ConfigError(f"Run.sample(num={num!r}) is not valid; give the number of samples, "
                        "an integer >= 1.")
    _check_seed("Run.sample", seed)
    settings = self._sampling(sampling_overrides)
    batch = min(int(num), settings.batch_size)
    fn = self.family.sample_fn(batch, settings)
    return families.draw(fn, self.params, int(num), batch, jax.random.PRNGKey(int(seed)))

  def _sampling(self, overrides):
    """``config.sampling`` with ``overrides`` (ConfigError naming an unknown or bad one)."""
    if not overrides:
      return self.config.sampling
    known = [f.name for f in dataclasses.fields(self.config.sampling)]
    for name in overrides:
      if name not in known:
        raise ConfigError(f"Run.sample({name}=...): {name!r} is not a field of "
                          f"config.sampling{did_you_mean(name, known)}; its fields: "
                          f"{', '.join(known)}.")
    settings = self.config.sampling.replace(**overrides)
    checks.validate(self.config.replace(sampling=settings), num_devices=1)
    return settings

  def to_uint8(self, samples) -> Optional[np.ndarray]:
    """Samples as uint8 images (None for 2-D points)."""
    return self.family.to_uint8(samples)

  def encode(self, x) -> Tuple[jax.Array, jax.Array]:
    """The VAE's q(z|x): (mean, log-variance), each [B, latent_dim], for x [B, H, W, C]
    in [0, 1]."""
    self._vae_only("encode")
    x = _examples("Run.encode", "x", x, self.family.example_shape)
    return self.family.encoder(self.params)(x)

  def decode(self, z) -> jax.Array:
    """The VAE's p(x|z) as pixel probabilities sigmoid(logits) [B, H, W, C] for z [B, L]."""
    self._vae_only("decode")
    z = _examples("Run.decode", "z", z, (self.config.model.latent_dim,))
    return jax.nn.sigmoid(self.family.decoder(self.params)(z))


def load(workdir: str, step: int = -1, ema_std_rel: Optional[float] = None) -> Run:
  """The run in ``workdir`` (a str or path): its config (config.json) and the EMA
  parameters of checkpoint ``step`` (an integer: a saved step, or -1 for the newest
  readable one). Raises ConfigError (one line) for an argument of another type or value,
  or when there is no run or no readable checkpoint.

  ``ema_std_rel``: instead, the post-hoc EMA of that relative length σ_rel (EDM2 §3),
  reconstructed from the run's snapshots up to snapshot ``step`` (-1: the newest); the
  run must have been trained with ``training.phema_std_rel`` (one-line errors otherwise,
  and for a σ_rel its snapshots do not reconstruct: :mod:`diffusion.train.posthoc_ema`).
  """
  if isinstance(workdir, os.PathLike):
    workdir = os.fspath(workdir)
  if not isinstance(workdir, str) or not workdir:
    raise ConfigError(f"load(workdir={workdir!r}) is not valid; give the run's folder (a "
                      "training run's --workdir) as a str or path.")
  if not _is_int(step) or step < -1:
    raise ConfigError(f"load(step={step!r}) is not valid; give a saved checkpoint's step "
                      "(an integer >= 0), or -1 for the newest.")
  if not os.path.isfile(os.path.join(workdir, "config.json")):
    raise ConfigError(f"load(workdir={workdir!r}): no config.json there; give a training "
                      "run's --workdir.")
  path = os.path.join(workdir, "config.json")
  with untrusted.reading(path, "run config", name_source=True,
                         fix="restore it, or train a new run"):
    config = checks.validate(load_config(workdir))
  family = families.make_family(config)
  if ema_std_rel is not None:
    made = posthoc_ema.reconstruct(workdir, family, ema_std_rel, int(step))
    return Run(workdir, config, family, made.params, made.step, made.std_rel)
  params, found = restore_ema_params(workdir, family, int(step))
  return Run(workdir, config, family, params, found)


# ---- arguments of the API, checked as the command lines check their flags ---------------

SEED_LIMIT = 2 ** 32   # jax.random.PRNGKey keeps the low 32 bits (2^32 would draw as 0)


def _is_int(v) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_seed(call: str, seed) -> None:
  if not _is_int(seed) or not 0 <= seed < SEED_LIMIT:
    raise ConfigError(f"{call}(seed={seed!r}) is not valid; give an integer in [0, 2^32).")


def _is_traced(x) -> bool:
  return isinstance(x, jax.core.Tracer)


def _numeric(call: str, name: str, value):
  """``value`` as an array (tracers as they are); ConfigError unless it holds numbers."""
  if _is_traced(value):
    return value
  try:
    array = np.asarray(value)
  except Exception:  # noqa: BLE001 - ragged lists and other non-arrays
    array = None
  if array is None or array.dtype == bool or not (
      np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
    got = type(value).__name__ if array is None else f"{type(value).__name__} of {array.dtype}"
    raise ConfigError(f"{call}: {name} must be a numeric array; got a {got}.")
  return array


def _examples(call: str, name: str, x, example_shape: Tuple[int, ...]) -> jax.Array:
  """``x`` [B, *example_shape] as float32; ConfigError naming the expected layout."""
  x = _numeric(call, name, x)
  want = tuple(example_shape)
  if x.ndim == len(want) + 1 and tuple(x.shape[1:]) == want and x.shape[0] >= 1:
    return jnp.asarray(x, jnp.float32)
  layout = "[B, H, W, C], channels last (NHWC)" if len(want) == 3 else "[B, D]"
  hint = ""
  if len(want) == 3 and x.ndim == 4 and tuple(x.shape[1:]) == (want[2], want[0], want[1]):
    hint = " (channels first, NCHW? transpose it to NHWC)"
  elif x.ndim == len(want) + 1 and x.shape[0] == 0:
    hint = " (no examples)"
  raise ConfigError(f"{call}: {name} has shape {tuple(x.shape)}{hint}; this run's examples "
                    f"are {list(want)}, so give {layout} = [B, {', '.join(map(str, want))}].")


def _levels(call: str, t, batch: int, num_levels: int) -> jax.Array:
  """Levels ``t`` (one, or [batch]) as int32 [batch]; ConfigError unless each is an
  integer in 0..num_levels − 1 (a float is refused unless it is a whole number)."""
  t = _numeric(call, "t", t)
  if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != batch):
    raise ConfigError(f"{call}: t has shape {tuple(t.shape)}; give one level per example "
                      f"([{batch}]) or one level for all.")
  if not _is_traced(t):
    values = np.atleast_1d(t)
    bad = ~np.isfinite(values) | (values != np.round(values)) if values.dtype.kind == "f" \
        else np.zeros(values.shape, bool)
    bad |= (values < 0) | (values > num_levels - 1)
    if bad.any():
      value = values[np.argmax(bad)]
      raise ConfigError(f"{call}: t={value.item()!r} is not a level of this run; give integers "
                        f"in 0..{num_levels - 1} (its process has T={num_levels} levels, 0 = "
                        "least noise).")
  return jnp.broadcast_to(jnp.asarray(t, jnp.int32), (batch,))

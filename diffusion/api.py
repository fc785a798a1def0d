"""The public Python API: library entry points that parse a config section once.

Every function here accepts a config section as an ``ml_collections.ConfigDict``, a
plain dict or its typed dataclass; it parses and checks it (one line naming a bad
field), then calls the config-free code below it. Inside the package nothing
re-parses: this module, the command lines, sweeps and reproductions are the
entry points.

  load(workdir, step=-1) -> Run          a trained (or imported) run: config + EMA params
  Run.eps(x_t, t)                        the network's ε (diffusion families)
  Run.sample(num, seed=0, **overrides)   samples [num, *example_shape] float32
  Run.encode(x) / Run.decode(z)          the VAE's q(z|x) mean and log-variance, p(x|z)
"""

from typing import Callable, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from diffusion import families, samplers
from diffusion.config import (DataConfig, DiffusionConfig, ModelConfig, SamplingConfig,
                              checks)
from diffusion.core import losses
from diffusion.errors import ConfigError
from diffusion.families import builders
from diffusion.io.workdir import load_config, restore_ema_params


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
  """A loaded run: its typed ``config``, ``family``, EMA ``params`` and their ``step``."""

  def __init__(self, workdir: str, config, family, params, step: int):
    self.workdir, self.config, self.family = workdir, config, family
    self.params, self.step = params, step

  def __repr__(self):
    return (f"Run({self.workdir!r}, family={self.config.family!r}, step={self.step}, "
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
    (0 = least noise). Learned-variance models: the ε̂ half of the output."""
    self._diffusion_only("eps")
    x_t = jnp.asarray(x_t, jnp.float32)
    t = jnp.broadcast_to(jnp.asarray(t, jnp.int32), (x_t.shape[0],))
    out = self.family.eps_fn(self.params)(x_t, t)
    return out[0] if isinstance(out, tuple) else out

  def sample(self, num: int, seed: int = 0, **sampling_overrides) -> np.ndarray:
    """``num`` samples [num, *example_shape] float32 in model space (images in the data
    range: [-1, 1] centered, else [0, 1]). ``sampling_overrides`` replace fields of
    ``config.sampling``, e.g. ``method='ddim', num_steps=50``."""
    settings = self.config.sampling.replace(**sampling_overrides) if sampling_overrides \
        else self.config.sampling
    batch = min(int(num), settings.batch_size)
    fn = self.family.sample_fn(batch, settings)
    return families.draw(fn, self.params, int(num), batch, jax.random.PRNGKey(seed))

  def to_uint8(self, samples) -> Optional[np.ndarray]:
    """Samples as uint8 images (None for 2-D points)."""
    return self.family.to_uint8(samples)

  def encode(self, x) -> Tuple[jax.Array, jax.Array]:
    """The VAE's q(z|x): (mean, log-variance), each [B, latent_dim], for x [B, H, W, C]
    in [0, 1]."""
    self._vae_only("encode")
    return self.family.encoder(self.params)(jnp.asarray(x, jnp.float32))

  def decode(self, z) -> jax.Array:
    """The VAE's p(x|z) as pixel probabilities sigmoid(logits) [B, H, W, C] for z [B, L]."""
    self._vae_only("decode")
    return jax.nn.sigmoid(self.family.decoder(self.params)(jnp.asarray(z, jnp.float32)))


def load(workdir: str, step: int = -1) -> Run:
  """The run in ``workdir``: its config (config.json) and the EMA parameters of
  checkpoint ``step`` (-1: the newest readable one). Raises ConfigError (one line)
  when there is no run or no readable checkpoint."""
  config = checks.validate(load_config(workdir))
  family = families.make_family(config)
  params, found = restore_ema_params(workdir, family, step)
  return Run(workdir, config, family, params, found)

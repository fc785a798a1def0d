"""Model families: what the training loop, sampling and evaluation need of a model.

A config names its family (``config.family``); everything above this module sees a
family only through this small interface, so the loop is not welded to diffusion:

  example_shape                       shape of one model input, e.g. (32, 32, 3)
  init_params(key) -> params
  loss_hparams() -> {name: float}     loss weights a population of runs may vary
  loss_fn(params, batch, key, hparams) -> (mean loss, {metric: scalar})   pure
  heldout_losses(params, batch, key) -> [B]  the loss per example, inference mode, its
                                      randomness from key (a held-out metric)
  sample_fn(num) -> jitted (params, key) -> samples [num, *example_shape]
  describe_sampling() -> str          how sample_fn draws, e.g. "ddim, 50 steps"
  sampling_record(steps_from) -> SamplingRecord   what names and describes the sampling
                                      (sample.py's folder, console line and meta.json)
  to_uint8(samples) -> uint8 images (or None for points)
  trainable                           False when the model has no parameters to train
  write_extras(params, out_dir, key) -> [paths]   files written beside sample.py's samples

:class:`DiffusionFamily` is DPM, NCSN and DDPM: process + ε-model + loss + sampler;
:class:`diffusion.families.vae.VAEFamily` is the VAE: encoder + decoder + ELBO.
"""

from typing import Any, Callable, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from diffusion import samplers
from diffusion.config import DiffusionRunConfig
from diffusion.core.losses import training_losses
from diffusion.data import data_range, to_uint8
from diffusion.families import builders
from diffusion.families.sampling_record import SamplingRecord


class DiffusionFamily:
  """A diffusion model of a whole config: its process, network, loss and sampler."""

  def __init__(self, config: DiffusionRunConfig):
    self.config = c = config
    self.process = builders.make_process(c.diffusion)
    self.module = builders.make_model(c.model, c.data, c.diffusion.num_timesteps)
    self.loss_options = builders.loss_options(c.diffusion)
    self.example_shape: Tuple[int, ...] = c.data.example_shape
    # x0_hat is clipped to the data range of images; toy points are unbounded.
    self.x_range: Optional[Tuple[float, float]] = (
        None if c.data.is_toy else data_range(c.data.centered))

  def init_params(self, key: jax.Array) -> Any:
    """Initial parameters ({} for a parameter-free exact model)."""
    if not self.trainable:
      return {}
    x = jnp.zeros((1, *self.example_shape), jnp.float32)
    variables = self.module.init({"params": key, "dropout": key}, x, jnp.zeros((1,)),
                                 train=False)
    return variables.get("params", {})

  def abstract_params(self) -> Any:
    """Shapes and dtypes of the parameters (no allocation): a restore target."""
    return jax.eval_shape(self.init_params, jax.random.PRNGKey(0))

  @property
  def trainable(self) -> bool:
    """Whether the network has parameters to train: the exact mixture model has none (its
    run is a config and a step-0 checkpoint)."""
    return not getattr(self.module, "is_exact", False)

  def loss_hparams(self) -> Dict[str, float]:
    return {"hybrid_lambda": self.config.diffusion.hybrid_lambda}

  def loss_fn(self, params, batch: jax.Array, key: jax.Array,
              hparams: Dict[str, jax.Array]) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """Mean training loss of a batch: t ~ U{0..T−1}, ε ~ N(0, I), then
    :func:`diffusion.core.losses.training_losses`; metrics: mse (and vb)."""
    k_t, k_noise, k_dropout = jax.random.split(key, 3)
    t = jax.random.randint(k_t, (batch.shape[0],), 0, self.process.num_timesteps,
                           dtype=jnp.int32)
    noise = jax.random.normal(k_noise, batch.shape, jnp.float32)
    eps_fn = builders.make_eps_fn(self.module, params, self.process, self.config.model,
                                  train=True, dropout_rng=k_dropout)
    options = dict(self.loss_options, hybrid_lambda=hparams.get(
        "hybrid_lambda", self.loss_options["hybrid_lambda"]))
    terms = training_losses(self.process, eps_fn, batch, t, noise, **options)
    metrics = {k: jnp.mean(v) for k, v in terms.items() if k != "loss"}
    return jnp.mean(terms["loss"]), metrics

  def heldout_losses(self, params, batch: jax.Array, key: jax.Array) -> jax.Array:
    """Per-example training loss of ``batch`` [B, ...] in inference mode (no dropout), with
    t ~ U{0..T−1} and ε ~ N(0, I) drawn from ``key`` as :meth:`loss_fn` draws them: a fixed
    key is a fixed (x0, t, ε), the same loss for every run that shares it. [B] float32."""
    k_t, k_noise, _ = jax.random.split(key, 3)
    t = jax.random.randint(k_t, (batch.shape[0],), 0, self.process.num_timesteps,
                           dtype=jnp.int32)
    noise = jax.random.normal(k_noise, batch.shape, jnp.float32)
    return training_losses(self.process, self.eps_fn(params), batch, t, noise,
                           **self.loss_options)["loss"]

  def eps_fn(self, params) -> Callable:
    """``eps_fn(x_t, t)`` of the network with ``params`` (inference: no dropout)."""
    return builders.make_eps_fn(self.module, params, self.process, self.config.model)

  def _eps(self, params, x_t, t):
    return self.eps_fn(params)(x_t, t)

  def sample_fn(self, num: int, settings=None,
                out_sharding: Optional[jax.sharding.Sharding] = None,
                on_progress: Optional[Callable[[int, int], None]] = None) -> Callable:
    """Jitted ``(params, key) -> samples [num, *example_shape]`` (model space).

    ``settings``: a typed sampling section (default: the config's). A chain
    sampler's coefficient tables are computed here, once. ``out_sharding`` (the
    batch split over a mesh) lets XLA shard the whole chain over devices.
    ``on_progress(steps done, steps in all)``: reported about every 5% of a chain
    sampler's chain (:func:`diffusion.samplers.run_plan`; the function then makes a few
    compiled calls, and the samples are the same); dpm_solver and ode report nothing.
    """
    shape = (int(num), *self.example_shape)
    sampler = samplers.Sampler(self.process,
                               **builders.sampler_options(settings or self.config.sampling))
    if on_progress is not None and sampler.plan is not None:
      if out_sharding is not None:
        raise ValueError("sample_fn: give on_progress or out_sharding, not both (a chain "
                         "in segments is not sharded by its output).")
      # Outside jit the parameters must be arguments of the segments (a Partial), not
      # constants of a new closure, which would compile the chain again at every call.
      return lambda params, key: sampler(jax.tree_util.Partial(self._eps, params), shape, key,
                                         x0_range=self.x_range, on_progress=on_progress)

    def sample(params, key):
      return sampler(self.eps_fn(params), shape, key, x0_range=self.x_range)

    return jax.jit(sample, out_shardings=out_sharding)

  def describe_sampling(self, settings=None) -> str:
    """How ``sample_fn`` draws, for a log line: ``"ddim, 50 steps"`` (and the sampler's
    own words about its cost, e.g. annealed Langevin's steps at each level)."""
    s = settings or self.config.sampling
    return samplers.describe(self.process.num_timesteps, **builders.sampler_options(s))

  def to_uint8(self, samples) -> Optional[np.ndarray]:
    """Samples as uint8 images (``sampling.quantize``), or None for toy points."""
    if self.config.data.is_toy:
      return None
    return to_uint8(samples, self.config.data.centered, quantize=self.config.sampling.quantize)

  def sampling_record(self, settings=None,
                      steps_from: str = "config.sampling.num_steps") -> SamplingRecord:
    """The sampler, its chain's length and the options that change its samples (those a
    sampler module lists in ``NAMED_BY``, e.g. DDIM's eta), as ``sample.py`` records
    them; ``steps_from`` names where ``num_steps`` came from in the console phrase."""
    s = settings or self.config.sampling
    options = builders.sampler_options(s)
    levels = int(self.process.num_timesteps)
    steps, n = samplers.effective_steps(s.num_steps, levels), int(s.num_steps)
    cost = samplers.cost_note(levels, **options)
    phrase = (f"{steps} steps of {levels} levels ({steps_from}={n}"
              + (", 0 = every level" if n == 0 else "") + ")" + (f", {cost}" if cost else ""))
    named = {k: float(v) for k, v in samplers.named_options(**options).items()}
    name = "_".join([s.method, f"s{steps}"] + [f"{k}{v:g}" for k, v in named.items()])
    return SamplingRecord(sampler=s.method, steps=steps, phrase=phrase, name=name,
                          options=named)

  def write_extras(self, params, out_dir: str, key: jax.Array) -> List[str]:
    """Files beside ``sample.py``'s samples: none for a diffusion model."""
    del params, out_dir, key
    return []

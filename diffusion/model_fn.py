"""Glue from a network and a process to the ``eps_fn(x_t, t)`` everything else uses.

Models know nothing of processes and processes know nothing of models; this is
the one place where they meet. Training, samplers and evaluation only ever see
``eps_fn(x_t, t) -> eps_hat`` (or ``(eps_hat, v)`` for learned variance).

Noise-level input (``config.model.cond``):
  * ``index``: the network embeds the level index t as a float (DDPM; also
    score_sde's DDPM-architecture SMLD models, which embed the sigma index).
  * ``log_sigma``: the network embeds log sigma_t (VE only; NCSN++-style).
  Both are a fixed function of t, so the choice only changes what the
  sinusoidal embedding sees; ``index`` is the default for all paper configs.

Output reading (``config.model.scale_by_sigma``): NCSNv2's technique 3 divides
the network output h by sigma and calls it the score, s = h / sigma. We read it
exactly so and convert to eps = -sigma * s (= -h). With ``conditional=False``
this gives NCSNv2's noise-unconditional score network.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp

from diffusion.config_fields import get_field
from diffusion.errors import ConfigError

EpsFn = Callable[[jax.Array, jax.Array], Any]


def model_cond(process, t: jax.Array, cond: str = "index") -> jax.Array:
  """The network's noise-level input for level indices ``t`` [B] (float32 [B])."""
  if cond == "index":
    return t.astype(jnp.float32)
  if cond == "log_sigma":
    if not hasattr(process, "sigmas"):
      raise ConfigError(
          "model.cond='log_sigma' needs a VE process (diffusion.variant=ncsn); "
          "use model.cond='index' for VP variants.")
    return jnp.log(process.sigmas[t])
  raise ConfigError(f"model.cond={cond!r} is not valid; choose one of 'index', 'log_sigma'.")


def make_eps_fn(module, params, process, model_cfg, *, train: bool = False,
                dropout_rng: jax.Array | None = None) -> EpsFn:
  """Returns ``eps_fn(x_t, t)`` for a network ``module`` with ``params``.

  Args:
    module: a Flax module from :func:`diffusion.make_model`.
    params: its parameter pytree (ignored by the parameter-free analytic model).
    process: a VP or VE process from :func:`diffusion.make_process`.
    model_cfg: ``config.model`` (reads ``name``, ``cond``, ``scale_by_sigma``).
    train: enables dropout; then ``dropout_rng`` is required.

  The returned function maps x_t [B, ...] and t int32 [B] to eps_hat with x_t's
  shape, or to ``(eps_hat, v)`` when the network has twice the data channels
  (learned variance; v in [-1, 1] interpolates the log-variance).
  """
  if train and dropout_rng is None:
    raise ValueError("make_eps_fn(train=True) needs dropout_rng (a PRNG key for dropout).")
  if get_field(model_cfg, "name", "unet") == "analytic":
    def analytic_eps(x_t, t):
      return module.apply({}, x_t, process.signal_scale(t), process.noise_std(t))
    return analytic_eps

  cond_kind = get_field(model_cfg, "cond", "index")
  scale_by_sigma = get_field(model_cfg, "scale_by_sigma", False)
  rngs = {"dropout": dropout_rng} if train else {}

  def eps_fn(x_t, t):
    out = module.apply({"params": params}, x_t, model_cond(process, t, cond_kind),
                       train=train, rngs=rngs)
    channels = x_t.shape[-1]
    eps, v = out[..., :channels], None
    if out.shape[-1] == 2 * channels:
      v = out[..., channels:]
    if scale_by_sigma:
      sigma = process.noise_std(t).reshape((-1,) + (1,) * (x_t.ndim - 1))
      eps = process.score_to_eps(eps / sigma, t)
    return eps if v is None else (eps, v)

  return eps_fn

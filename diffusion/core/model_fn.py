"""Glue from a network and a process to the ``eps_fn(x_t, t)`` everything else uses.

Models know nothing of processes and processes know nothing of models; this is
the one place where they meet. Training, samplers and evaluation only ever see
``eps_fn(x_t, t)``, which returns ε̂, or the pair ``(ε̂, v)`` for learned-variance
models; :func:`as_prediction` reads either as one type, :class:`EpsPrediction`.

Noise-level input (``cond``; ``config.model.cond``):
  * ``index``: the network embeds the level index t as a float (DDPM; also
    score_sde's DDPM-architecture SMLD models, which embed the sigma index).
  * ``log_sigma``: the network embeds log sigma_t (VE only; NCSN++-style).
  Both are a fixed function of t, so the choice only changes what the
  sinusoidal embedding sees; ``index`` is the default for all paper configs.

Output reading (``config.model.scale_by_sigma``): NCSNv2's technique 3 divides
the network output h by sigma and calls it the score, s = h / sigma. We read it
exactly so and convert to eps = -sigma * s (= -h). With ``conditional=False``
this gives NCSNv2's noise-unconditional score network.

Score-output networks: a module whose ``output_is_score`` is True (NCSN's RefineNet,
:mod:`diffusion.models.refinenet`) returns the score s itself, as the NCSN code's
``CondRefineNetDilated``; we read eps = -sigma * s. The network declares this (it is a
property of the architecture, not a setting), and ``scale_by_sigma`` must then be off.

Input scaling (``config.model.rescale_inputs``, NCSN presets): the network sees 2x − 1,
as both NCSN codes feed their [0, 1] data to the score network; the noise is added
and the score is learned in data space.

Learned variance: a network with twice the data channels outputs [ε̂, v] along
the last axis; v in [-1, 1] interpolates the log-variance (Improved DDPM eq. 15).
"""

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from diffusion.errors import ConfigError

EpsFn = Callable[[jax.Array, jax.Array], Any]
NOISE_INPUTS = ("index", "log_sigma")   # what the network embeds (module docstring)


class EpsPrediction(NamedTuple):
  """What an ε-model predicts: ε̂ [B, ...] and, for learned variance, v [B, ...] in [-1, 1]."""
  eps: jax.Array
  v: Optional[jax.Array] = None


def as_prediction(out, var_type: Optional[str] = None,
                  field: str = "var_type") -> EpsPrediction:
  """An ``eps_fn`` output (ε̂, or a pair (ε̂, v)) as an :class:`EpsPrediction`.

  Raises ConfigError naming ``field`` when ``var_type`` is ``learned_range`` and
  there is no v.
  """
  if isinstance(out, (tuple, list)):
    if len(out) != 2:
      raise ValueError("eps_fn must return eps or a pair (eps, v).")
    pred = EpsPrediction(out[0], out[1])
  else:
    pred = EpsPrediction(out)
  if var_type == "learned_range" and pred.v is None:
    raise ConfigError(f"{field}='learned_range' needs an eps_fn that returns (eps, v) "
                      "(a model with 2C output channels); this one returns eps only.")
  return pred


def split_channels(out: jax.Array, channels: int) -> EpsPrediction:
  """A network output [..., C] or [..., 2C] as ε̂ and (for 2C) the variance input v."""
  if out.shape[-1] == 2 * channels:
    return EpsPrediction(out[..., :channels], out[..., channels:])
  return EpsPrediction(out[..., :channels])


def model_cond(process, t: jax.Array, cond: str = "index") -> jax.Array:
  """The network's noise-level input for level indices ``t`` [B] (float32 [B])."""
  if cond == "index":
    return t.astype(jnp.float32)
  if process.kind != "ve":
    raise ConfigError("model.cond='log_sigma' needs a VE process (diffusion.variant=ncsn); "
                      "use model.cond='index' for VP variants.")
  return jnp.log(process.noise_std(t))


def make_eps_fn(module, params, process, *, cond: str = "index",
                rescale_inputs: bool = False, scale_by_sigma: bool = False,
                train: bool = False, dropout_rng: jax.Array | None = None) -> EpsFn:
  """Returns ``eps_fn(x_t, t)`` for a network ``module`` with ``params``.

  Args:
    module: a Flax network (called ``apply({'params': p}, x, cond, train=, rngs=)``).
    params: its parameter pytree (ignored by the parameter-free analytic model).
    process: a VP or VE process.
    cond, rescale_inputs, scale_by_sigma: the network's noise-level input, its 2x − 1
      input scaling and its output reading (module docstring; ``config.model``).
    train: enables dropout; then ``dropout_rng`` is required.

  The returned function maps x_t [B, ...] and t int32 [B] to ε̂ with x_t's
  shape, or to ``(ε̂, v)`` when the network has twice the data channels.
  """
  if train and dropout_rng is None:
    raise ValueError("make_eps_fn(train=True) needs dropout_rng (a PRNG key for dropout).")
  if getattr(module, "is_exact", False):   # the exact ε of known data (models/analytic.py):
    def analytic_eps(x_t, t):              # called with the level's scale and noise std
      return module.apply({}, x_t, process.signal_scale(t), process.noise_std(t))
    return analytic_eps

  rngs = {"dropout": dropout_rng} if train else {}
  output_is_score = bool(getattr(module, "output_is_score", False))
  if output_is_score and scale_by_sigma:
    raise ConfigError(f"model.scale_by_sigma=True, but {type(module).__name__} outputs the "
                      "score itself (NCSN); set model.scale_by_sigma=False.")

  def eps_fn(x_t, t):
    x_in = 2.0 * x_t - 1.0 if rescale_inputs else x_t   # NCSN: [0, 1] data seen as [-1, 1]
    out = module.apply({"params": params}, x_in, model_cond(process, t, cond),
                       train=train, rngs=rngs)
    eps, v = split_channels(out, x_t.shape[-1])
    if scale_by_sigma:
      sigma = process.noise_std(t).reshape((-1,) + (1,) * (x_t.ndim - 1))
      eps = process.score_to_eps(eps / sigma, t)
    elif output_is_score:
      eps = process.score_to_eps(eps, t)
    return eps if v is None else (eps, v)

  return eps_fn

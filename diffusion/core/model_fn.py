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

Fractional levels (a sampler's ``sigma_policy='interpolate'``): ``eps_fn`` also takes a
float t, a level u between the trained ones (the process continued in log σ,
``Process.level_marginal``). What the network makes of it is the network's:
  * a network whose ``continuous_levels`` is True embeds its noise-level input with a
    continuous function (the U-Net's and the MLP's sinusoidal embedding, as DPM-Solver and
    diffusers feed DDPM's U-Net a fractional t; NCSNv2's unconditional RefineNet, which
    ignores it): it sees u itself (or log σ(u) with ``cond=log_sigma``), one evaluation;
  * any other network (NCSN's RefineNet, one embedding row per level): the two
    neighbouring levels j = ⌊u⌋, j + 1 are evaluated on x̂ = x/s(u) at their own scales
    and their denoised x̂₀ mixed linearly, w = u − j — two evaluations, one batched call
    (:func:`between_levels`; the probability-flow ODE's interpolation);
  * the exact model (``models.analytic``) gets the continued process's scale and std: the
    exact ε of the data at σ(u).
An integer t takes the unchanged integer path (the same program as before fractional levels).
"""

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from diffusion.core.processes import is_fractional
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
  continuous = bool(getattr(module, "continuous_levels", False))

  rngs = {"dropout": dropout_rng} if train else {}
  output_is_score = bool(getattr(module, "output_is_score", False))
  if output_is_score and scale_by_sigma:
    raise ConfigError(f"model.scale_by_sigma=True, but {type(module).__name__} outputs the "
                      "score itself (NCSN); set model.scale_by_sigma=False.")

  def network_eps(x_t, t):
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

  def eps_fn(x_t, t):
    if is_fractional(t) and not continuous:
      return between_levels(network_eps, process, x_t, t)
    return network_eps(x_t, t)

  return eps_fn


def between_levels(eps_at_levels: EpsFn, process, x_t: jax.Array, u: jax.Array):
  """ε at fractional levels ``u`` [B] of a network that knows only integer levels.

  With j = ⌊u⌋ (at most T − 2), w = u − j, x̂ = x_t/s(u) (the process continued in log σ,
  ``level_marginal``; σ = std/scale) and each level seeing x̂ at its own signal scale, the
  levels' denoised x̂₀ = x̂ − σ_j ε_j are mixed, (1 − w) x̂₀_j + w x̂₀_{j+1}, which gives
    ε = ((1 − w) σ_j ε(s_j x̂, j) + w σ_{j+1} ε(s_{j+1} x̂, j + 1))/σ(u)
  (mixing ε itself would be off by σ_{j+1}/σ_j where neighbouring levels are far apart);
  one call of ``eps_at_levels`` on [2B, ...]. A learned-variance v is mixed linearly.
  x_t [B, ...] float32.
  """
  T = process.num_timesteps
  u = jnp.asarray(u, jnp.float32)
  j = jnp.clip(jnp.floor(u).astype(jnp.int32), 0, max(T - 2, 0))
  k = jnp.minimum(j + 1, T - 1)
  shape = (-1,) + (1,) * (x_t.ndim - 1)
  w = jnp.clip(u - j, 0.0, 1.0).reshape(shape)
  x_hat = x_t / process.signal_scale(u).reshape(shape)
  xs = jnp.concatenate([process.signal_scale(j).reshape(shape) * x_hat,
                        process.signal_scale(k).reshape(shape) * x_hat], axis=0)
  out = eps_at_levels(xs, jnp.concatenate([j, k]))
  b = x_t.shape[0]
  sigma_u = process.noise_std(u) / process.signal_scale(u)
  cj = (1.0 - w) * (process.noise_std(j) / process.signal_scale(j) / sigma_u).reshape(shape)
  ck = w * (process.noise_std(k) / process.signal_scale(k) / sigma_u).reshape(shape)
  if isinstance(out, (tuple, list)):
    eps, v = out
    return cj * eps[:b] + ck * eps[b:], (1.0 - w) * v[:b] + w * v[b:]
  return cj * out[:b] + ck * out[b:]

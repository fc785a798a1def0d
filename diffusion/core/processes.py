"""Forward noising processes: VP (DPM, DDPM) and VE (NCSN) as JAX pytrees.

Both families share one interface indexed by the noise level t (int32 [B],
0 = least noise, T−1 = most; ``signal_scale``, ``noise_std`` and the score/ε
conversions also take a float t: a fractional level, see ``level_marginal``):

  VP (Ho et al. 2020 eq. 4):  x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε
  VE (Song & Ermon 2019):     x_t = x₀ + σ_t ε,       σ ascending with t

so a model that predicts ε serves both, and DSM with λ(σ) = σ² is ε-MSE on
the VE process. Per-t tables are computed in float64 numpy at construction and
stored as float32 arrays. Per-t coefficients gathered at t broadcast against x
of any rank ([B] -> [B, 1, ..., 1]); with scalar t (inside vmap) they are
scalars. All methods are pure and jit/vmap-able.
"""

import math
from typing import ClassVar, Optional, Sequence, Tuple, Union

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from diffusion.core import schedules
from diffusion.errors import ConfigError, check_choice

Array = jax.Array

# Reverse-process variances this module implements (p_log_variance).
VAR_TYPES = ("fixedlarge", "fixedsmall", "learned_range")


def _gather(table: Array, t: Array, ndim: int) -> Array:
  """table[t] reshaped to broadcast against an x of rank ``ndim``.

  t: int [B] -> [B, 1, ..., 1] (rank ndim); t scalar -> scalar.
  """
  return _broadcast(table[t], ndim)


def _broadcast(c: Array, ndim: int) -> Array:
  """Per-example values c [B] as [B, 1, ..., 1] (rank ``ndim``); a scalar stays one."""
  return c.reshape(c.shape + (1,) * max(ndim - c.ndim, 0))


def is_fractional(t) -> bool:
  """Whether levels ``t`` are fractional (a float dtype) rather than integer indices.
  Decided from the dtype, so it is static under jit."""
  return bool(jnp.issubdtype(jnp.result_type(t), jnp.floating))


def _f32(a: np.ndarray) -> Array:
  return jnp.asarray(np.asarray(a, np.float64), dtype=jnp.float32)


def _host_f64(table: Array) -> np.ndarray:
  """A stored table back on the host in float64 (for exact re-derivations)."""
  try:
    return np.asarray(table, np.float64)
  except jax.errors.TracerArrayConversionError as e:
    raise ValueError("respacing needs a concrete process; call it outside jax.jit "
                     "(sample() jits itself).") from e


def _clipped_log(var: np.ndarray) -> np.ndarray:
  """log(var) with var[0] (= 0, the posterior at t = 0) replaced by var[1] (DDPM code)."""
  if len(var) == 1:  # T = 1: no later level to borrow from; keep it finite.
    return np.log(np.maximum(var, 1e-20))
  return np.log(np.append(var[1], var[1:]))


class _ProcessMethods:
  """Methods shared by VP and VE. Subclasses provide the per-t tables and ``kind``.

  ``kind`` is ``"vp"`` or ``"ve"``: callers ask it (or the capabilities below)
  instead of testing the class.

  Required tables (float32 [T]): ``_scale`` (signal coefficient), ``_std``
  (noise std), ``posterior_mean_coef1`` (on x₀), ``posterior_mean_coef2`` (on
  x_t), ``posterior_variance``, ``posterior_log_variance_clipped``,
  ``step_log_variance`` (log of the forward step variance, β_t or
  σ_t² − σ_{t−1}²), ``fixedlarge_log_variance``.
  """

  # -- marginal q(x_t | x0) ---------------------------------------------------
  def signal_scale(self, t: Array) -> Array:
    """√ᾱ_t (VP) or 1 (VE); t int [B] -> float32 [B] (a float t: ``level_marginal``)."""
    if is_fractional(t):
      return self.level_marginal(t)[0]
    return self._scale[t]

  def noise_std(self, t: Array) -> Array:
    """√(1 − ᾱ_t) (VP) or σ_t (VE); t int [B] -> float32 [B] (a float t: ``level_marginal``)."""
    if is_fractional(t):
      return self.level_marginal(t)[1]
    return self._std[t]

  def level_marginal(self, u: Array) -> Tuple[Array, Array]:
    """(scale, std) at fractional levels u ∈ [0, T−1] (float [B] or scalar), float32.

    Between two levels the process is continued in EDM's σ = std/scale (Karras et al.
    2022, §2): log σ is linear in u between the levels' log σ_j (k-diffusion's
    ``DiscreteSchedule``), and the marginal is that σ's: VP scale = 1/√(1 + σ²) (ᾱ =
    1/(1 + σ²)), std = σ·scale; VE scale = 1, std = σ. At an integer u this is the
    level's own (scale, std) up to float32 rounding; u outside [0, T−1] is clamped.
    """
    log_sigma = jnp.log(self._std / self._scale)
    levels = jnp.arange(log_sigma.shape[0], dtype=jnp.float32)
    sigma = jnp.exp(jnp.interp(jnp.asarray(u, jnp.float32), levels, log_sigma))
    if self.kind == "ve":
      return jnp.ones_like(sigma), sigma
    scale = jax.lax.rsqrt(1.0 + sigma ** 2)
    return scale, sigma * scale

  def snr(self, t: Array) -> Array:
    """Signal-to-noise ratio ᾱ_t/(1 − ᾱ_t) (VP) or 1/σ_t² (VE); [B] float32."""
    return self._scale[t] ** 2 / self._std[t] ** 2

  def q_sample(self, x0: Array, t: Array, noise: Array) -> Array:
    """Draw x_t ~ q(x_t | x₀) with the given noise (DDPM eq. 4).

    Args:
      x0: [B, ...] data; t: int32 [B]; noise: x0-shaped N(0, I) draw.
    Returns:
      x_t, x0's shape.
    """
    return _gather(self._scale, t, x0.ndim) * x0 + _gather(self._std, t, x0.ndim) * noise

  # -- posterior q(x_{t-1} | x_t, x0) ----------------------------------------------
  def q_posterior(self, x0: Array, x_t: Array, t: Array) -> Tuple[Array, Array, Array]:
    """Mean and variance of q(x_{t−1} | x_t, x₀) (DDPM eq. 6–7; VE analogue).

    At t = 0 the "previous" level is the data itself: mean = x₀, var = 0, and
    the returned log-variance is clipped to the t = 1 value (DDPM code).

    Args:
      x0, x_t: [B, ...]; t: int32 [B].
    Returns:
      (mean [B, ...], var [B, 1, ..., 1], log_var_clipped [B, 1, ..., 1]).
    """
    n = x_t.ndim
    mean = (_gather(self.posterior_mean_coef1, t, n) * x0
            + _gather(self.posterior_mean_coef2, t, n) * x_t)
    return (mean, _gather(self.posterior_variance, t, n),
            _gather(self.posterior_log_variance_clipped, t, n))

  # -- ε / x0 / score conversions ---------------------------------------------
  def predict_x0(self, x_t: Array, t: Array, eps: Array) -> Array:
    """x₀ = (x_t − std_t ε)/scale_t (inverts q_sample). Shapes as x_t."""
    n = x_t.ndim
    return (x_t - _gather(self._std, t, n) * eps) / _gather(self._scale, t, n)

  def predict_eps(self, x_t: Array, t: Array, x0: Array) -> Array:
    """ε = (x_t − scale_t x₀)/std_t. Shapes as x_t."""
    n = x_t.ndim
    return (x_t - _gather(self._scale, t, n) * x0) / _gather(self._std, t, n)

  def eps_to_score(self, eps: Array, t: Array) -> Array:
    """∇ log q(x_t | x₀) = −ε/std_t (Vincent 2011; Song et al. 2021 eq. 7)."""
    return -eps / _broadcast(self.noise_std(t), eps.ndim)

  def score_to_eps(self, score: Array, t: Array) -> Array:
    """ε = −std_t · score."""
    return -_broadcast(self.noise_std(t), score.ndim) * score

  # -- reverse step p(x_{t-1} | x_t) --------------------------------------------
  def p_log_variance(self, t: Array, var_type: str, v: Optional[Array] = None,
                     ndim: Optional[int] = None) -> Array:
    """Log-variance of the reverse step p(x_{t−1} | x_t).

    var_type:
      fixedlarge:    log of the forward step variance (β_t; VE σ_t² − σ_{t−1}²),
                     except t = 0 uses the posterior variance at t = 1 (DDPM code).
      fixedsmall:    the posterior's clipped log-variance (log β̃_t).
      learned_range: Improved DDPM eq. 15: with frac = (v + 1)/2,
                     frac·log(step var) + (1 − frac)·log β̃_t (clipped).
    Args:
      t: int32 [B] (or a scalar under vmap).
      v: learned_range only: [B, ...] model output in [−1, 1].
      ndim: rank of x for the fixed types; output shape [B, 1, ..., 1]
        (rank ndim). Default: v's rank, else 1 (shape [B]).
    Returns:
      log-variance, float32, broadcastable to x (v's shape for learned_range).
    """
    check_choice("diffusion.var_type", var_type, VAR_TYPES)
    if ndim is None:
      ndim = v.ndim if v is not None else jnp.ndim(t)
    if var_type == "fixedlarge":
      return _gather(self.fixedlarge_log_variance, t, ndim)
    if var_type == "fixedsmall":
      return _gather(self.posterior_log_variance_clipped, t, ndim)
    if v is None:
      raise ValueError("var_type='learned_range' needs the model's variance output v.")
    frac = (v + 1.0) / 2.0
    max_log = _gather(self.step_log_variance, t, v.ndim)
    min_log = _gather(self.posterior_log_variance_clipped, t, v.ndim)
    return frac * max_log + (1.0 - frac) * min_log

  def p_mean_variance(self, x_t: Array, t: Array, eps: Array, var_type: str,
                      v: Optional[Array] = None,
                      clip_range: Optional[Tuple[float, float]] = None
                      ) -> Tuple[Array, Array, Array]:
    """Ingredients of one ancestral step from an ε prediction (DDPM eq. 11).

    x̂₀ = predict_x0(x_t, t, ε) (optionally clipped to ``clip_range``), then
    μ = posterior mean(x̂₀, x_t, t) and the model log-variance.

    Args:
      x_t, eps: [B, ...]; t: int32 [B]; var_type, v: see ``p_log_variance``.
      clip_range: (lo, hi) data range, e.g. (−1, 1), or None.
    Returns:
      (mean [B, ...], log_var broadcastable to x_t, x0_pred [B, ...]).
    """
    x0_pred = self.predict_x0(x_t, t, eps)
    if clip_range is not None:
      x0_pred = jnp.clip(x0_pred, clip_range[0], clip_range[1])
    mean, _, _ = self.q_posterior(x0_pred, x_t, t)
    log_var = self.p_log_variance(t, var_type, v, ndim=x_t.ndim)
    return mean, log_var, x0_pred


@flax.struct.dataclass
class VPProcess(_ProcessMethods):
  """Variance-preserving process (DPM, DDPM): x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε.

  Build with ``VPProcess.from_betas(betas)``. All arrays float32 [T].
  """
  betas: Array
  alphas_cumprod: Array
  _scale: Array                          # √ᾱ_t
  _std: Array                            # √(1 − ᾱ_t)
  posterior_variance: Array              # β̃_t = β_t (1 − ᾱ_{t−1})/(1 − ᾱ_t), β̃_0 = 0
  posterior_log_variance_clipped: Array  # log β̃_t with index 0 -> log β̃_1
  posterior_mean_coef1: Array            # β_t √ᾱ_{t−1}/(1 − ᾱ_t)       (on x₀)
  posterior_mean_coef2: Array            # (1 − ᾱ_{t−1}) √α_t/(1 − ᾱ_t) (on x_t)
  step_log_variance: Array               # log β_t
  fixedlarge_log_variance: Array         # log β_t with index 0 -> log β̃_1
  num_timesteps: int = flax.struct.field(pytree_node=False, default=0)
  kind: ClassVar[str] = "vp"
  # DDPM's bound (discretized decoder, finite prior KL) is defined for VP only.
  has_likelihood_bound: ClassVar[bool] = True

  @classmethod
  def from_betas(cls, betas: np.ndarray) -> "VPProcess":
    """Builds the float32 tables from β [T] (float64 maths, DDPM code)."""
    b = np.asarray(betas, np.float64)
    ac = np.cumprod(1.0 - b)
    ac_prev = np.append(1.0, ac[:-1])  # ᾱ_{−1} := 1
    post_var = b * (1.0 - ac_prev) / (1.0 - ac)
    return cls(
        betas=_f32(b), alphas_cumprod=_f32(ac), _scale=_f32(np.sqrt(ac)),
        _std=_f32(np.sqrt(1.0 - ac)), posterior_variance=_f32(post_var),
        posterior_log_variance_clipped=_f32(_clipped_log(post_var)),
        posterior_mean_coef1=_f32(b * np.sqrt(ac_prev) / (1.0 - ac)),
        posterior_mean_coef2=_f32((1.0 - ac_prev) * np.sqrt(1.0 - b) / (1.0 - ac)),
        step_log_variance=_f32(np.log(b)),
        fixedlarge_log_variance=_f32(np.log(np.append(post_var[1:2], b[1:]))
                                     if len(b) > 1 else np.log(b)),
        num_timesteps=len(b))

  def host_marginal(self) -> Tuple[np.ndarray, np.ndarray]:
    """(√ᾱ_t, √(1 − ᾱ_t)) on the host in float64, ᾱ re-accumulated from β [T]."""
    ac = np.cumprod(1.0 - _host_f64(self.betas))
    return np.sqrt(ac), np.sqrt(1.0 - ac)

  def respace(self, timesteps: Sequence[int]) -> "VPProcess":
    """The chain restricted to the kept ``timesteps`` (ascending), as a new process.

    β_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}}, ᾱ_{τ_{−1}} = 1 (Improved DDPM respace.py),
    computed in float64 from the stored β: ᾱ is re-accumulated in float64 so the
    ratio of two nearly equal ᾱ keeps its precision (float32 ᾱ would give up to
    ~1e-3 relative error in small respaced β). Index i corresponds to step τ_i.
    Needs a concrete (non-traced) process.
    """
    ac = np.cumprod(1.0 - _host_f64(self.betas))[np.asarray(timesteps, np.int64)]
    ac_prev = np.append(1.0, ac[:-1])
    return VPProcess.from_betas(1.0 - ac / ac_prev)

  def prior_bpd(self, x0: Array) -> Array:
    """KL(q(x_T | x₀) ‖ N(0, I)) in bits/dim, per example (DDPM L_T).

    Written with log1p so the ≈1e−5 value survives float32:
    KL = ½(−ᾱ_T − log(1 − ᾱ_T) + ᾱ_T x₀²) per dim.
    Args: x0: [B, ...] in [−1, 1]. Returns [B] float32.
    """
    ab = self.alphas_cumprod[-1]
    kl = 0.5 * (-ab - jnp.log1p(-ab) + ab * jnp.square(x0))
    return jnp.mean(kl.reshape(kl.shape[0], -1), axis=1) / math.log(2.0)

  def prior_sample(self, key: Array, shape) -> Array:
    """x_T ~ N(0, I), float32 ``shape``."""
    return jax.random.normal(key, shape, jnp.float32)


@flax.struct.dataclass
class VEProcess(_ProcessMethods):
  """Variance-exploding process (NCSN): x_t = x₀ + σ_t ε, σ ascending in t.

  The forward chain is q(x_t | x_{t−1}) = N(x_{t−1}, (σ_t² − σ_{t−1}²) I) with
  σ_{−1} := 0 and x_{−1} := x₀. Build with ``VEProcess.from_sigmas``.
  """
  sigmas: Array
  _scale: Array                          # ones
  _std: Array                            # σ_t
  posterior_variance: Array              # σ_{t−1}²(σ_t² − σ_{t−1}²)/σ_t², 0 at t = 0
  posterior_log_variance_clipped: Array  # its log, index 0 -> index 1
  posterior_mean_coef1: Array            # 1 − σ_{t−1}²/σ_t²  (on x₀)
  posterior_mean_coef2: Array            # σ_{t−1}²/σ_t²      (on x_t)
  step_log_variance: Array               # log(σ_t² − σ_{t−1}²)
  fixedlarge_log_variance: Array         # same, index 0 -> posterior var at 1
  num_timesteps: int = flax.struct.field(pytree_node=False, default=0)
  kind: ClassVar[str] = "ve"
  has_likelihood_bound: ClassVar[bool] = False

  @classmethod
  def from_sigmas(cls, sigmas: np.ndarray) -> "VEProcess":
    """Builds the float32 tables from an ascending σ ladder [L]."""
    s = np.asarray(sigmas, np.float64)
    if len(s) < 1 or np.any(np.diff(s) <= 0) or s[0] <= 0:
      raise ConfigError(f"VE sigmas must be positive and strictly ascending, got {s[:3]}...")
    s2 = s ** 2
    s2_prev = np.append(0.0, s2[:-1])
    step_var = s2 - s2_prev
    post_var = s2_prev * step_var / s2
    return cls(
        sigmas=_f32(s), _scale=_f32(np.ones_like(s)), _std=_f32(s),
        posterior_variance=_f32(post_var),
        posterior_log_variance_clipped=_f32(_clipped_log(post_var)),
        posterior_mean_coef1=_f32(1.0 - s2_prev / s2),
        posterior_mean_coef2=_f32(s2_prev / s2),
        step_log_variance=_f32(np.log(step_var)),
        fixedlarge_log_variance=_f32(np.log(np.append(post_var[1:2], step_var[1:]))
                                     if len(s) > 1 else np.log(step_var)),
        num_timesteps=len(s))

  def host_marginal(self) -> Tuple[np.ndarray, np.ndarray]:
    """(1, σ_t) on the host in float64 [T]."""
    sigmas = _host_f64(self.sigmas)
    return np.ones_like(sigmas), sigmas

  def respace(self, timesteps: Sequence[int]) -> "VEProcess":
    """The σ ladder restricted to the kept ``timesteps`` (ascending), as a new process."""
    return VEProcess.from_sigmas(_host_f64(self.sigmas)[np.asarray(timesteps, np.int64)])

  def prior_bpd(self, x0: Array) -> Array:
    """KL(N(x₀, σ_max² I) ‖ N(0, σ_max² I)) = x₀²/(2σ_max²) per dim, bits/dim [B]."""
    kl = jnp.square(x0) / (2.0 * self.sigmas[-1] ** 2)
    return jnp.mean(kl.reshape(kl.shape[0], -1), axis=1) / math.log(2.0)

  def prior_sample(self, key: Array, shape) -> Array:
    """x_T ~ N(0, σ_max² I), float32 ``shape``."""
    return self.sigmas[-1] * jax.random.normal(key, shape, jnp.float32)


Process = Union[VPProcess, VEProcess]


def make_process(kind: str, *, schedule: str, num_timesteps: int, beta_start: float = 1e-4,
                 beta_end: float = 0.02, cosine_s: float = 0.008, sigma_min: float = 0.01,
                 sigma_max: float = 1.0) -> Process:
  """The VP (``kind='vp'``: DDPM, DPM) or VE (``'ve'``: NCSN) process of a schedule.

  VP: β from ``schedules.get_beta_schedule(schedule, num_timesteps, beta_start,
  beta_end, cosine_s)``; VE: the geometric ladder σ_min -> σ_max of num_timesteps
  levels (ascending). ``diffusion.make_process(config.diffusion)`` reads these from
  a config section.
  """
  if kind == "vp":
    return VPProcess.from_betas(schedules.get_beta_schedule(
        schedule, num_timesteps, beta_start, beta_end, cosine_s))
  return VEProcess.from_sigmas(schedules.geometric_sigmas(sigma_min, sigma_max, num_timesteps))

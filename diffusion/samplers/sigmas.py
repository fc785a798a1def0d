"""A discrete process seen in EDM's σ coordinates (Karras et al. 2022, §2 and App. C.3).

Every level t of a VP or VE process has a signal scale s_t and noise std n_t
(``process.host_marginal()``); in the scaled variable x̂ = x/s_t the marginal is
the data convolved with N(0, σ_t² I), σ_t = n_t/s_t (EDM eq. 1 with s = 1):
  VP: σ_t = √(1/ᾱ_t − 1)  (EDM's VP wrapper, ``VPPrecond``),   VE: σ_t = σ_t.
The probability-flow ODE in these coordinates is dx̂/dσ = ε̂(s_t x̂, t) (EDM eq. 4
with the denoiser D = x̂ − σ ε̂). The tables here are float64 [T], ascending in t.
"""

from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

from diffusion.core.model_fn import as_prediction

Array = jax.Array


def sigma_table(process) -> Tuple[np.ndarray, np.ndarray]:
  """(s_t, σ_t = n_t/s_t), float64 [T], σ ascending with t."""
  scale, std = process.host_marginal()
  return scale, std / scale


def nearest_level(sigmas: np.ndarray, sigma) -> np.ndarray:
  """Index of the discrete σ_j nearest to each σ (EDM's ``round_sigma``: argmin |σ − σ_j|)."""
  sigma = np.atleast_1d(np.asarray(sigma, np.float64))
  return np.argmin(np.abs(sigma[:, None] - sigmas[None, :]), axis=1).astype(np.int64)


def eps_at(eps_fn, x: Array, t) -> Array:
  """ε̂ of eps_fn at one level t for a batch x [B, ...]: an int scalar (python or traced)
  gives int32 levels, a float one a fractional level (float32 [B])."""
  t = jnp.asarray(t)
  dtype = jnp.float32 if jnp.issubdtype(t.dtype, jnp.floating) else jnp.int32
  return as_prediction(eps_fn(x, jnp.full((x.shape[0],), t, dtype))).eps


def fractional_level(sigmas: np.ndarray, sigma) -> np.ndarray:
  """The fractional level u of each σ: log σ_u linear in u between the levels' log σ_j
  (k-diffusion's ``DiscreteSchedule.sigma_to_t``), clamped to [0, T−1]. float64."""
  sigma = np.atleast_1d(np.asarray(sigma, np.float64))
  return np.interp(np.log(sigma), np.log(sigmas), np.arange(len(sigmas), dtype=np.float64))


def place(sigmas: np.ndarray, sigma, policy: str):
  """(model level, σ there) of each σ under a ``sigma_policy``.

  round: the nearest level j (EDM's ``round_sigma``) and its σ_j, int64 levels;
  interpolate: the fractional level u (:func:`fractional_level`) and σ itself, clamped
  to [σ_0, σ_{T−1}]; float64 levels.
  """
  if policy == "round":
    j = nearest_level(sigmas, sigma)
    return j, sigmas[j]
  sigma = np.clip(np.atleast_1d(np.asarray(sigma, np.float64)), sigmas[0], sigmas[-1])
  return fractional_level(sigmas, sigma), sigma


def scale_of(kind: str, sigma) -> np.ndarray:
  """The signal scale s of EDM's σ (float64): VP 1/√(1 + σ²) (σ² = 1/ᾱ − 1), VE 1."""
  sigma = np.asarray(sigma, np.float64)
  return 1.0 / np.sqrt(1.0 + sigma ** 2) if kind == "vp" else np.ones_like(sigma)


def interpolated_eps(eps_fn, scale: Array, log_sigma: Array, x_hat: Array, log_s) -> Array:
  """ε̂(x̂, σ) at a continuous σ between the discrete levels, for the ODE.

  With u the fractional level where log σ_u = log σ (σ piecewise log-linear in t
  between levels), j = ⌊u⌋ and w = u − j, the denoiser D = x̂ − σ ε̂ (the x̂₀ each level
  predicts) is interpolated, D = (1 − w) D_j + w D_{j+1}, D_j = x̂ − σ_j ε_θ(s_j x̂, j):
    ε̂ = (x̂ − D)/σ = ((1 − w) σ_j ε_θ(s_j x̂, j) + w σ_{j+1} ε_θ(s_{j+1} x̂, j + 1))/σ,
  each level seeing x̂ at its own signal scale (EDM's VP wrapper). Interpolating ε̂
  itself would be wrong where neighbouring σ's differ a lot (cosine T = 100: σ_98 ≈ 64,
  σ_99 ≈ 2029): a level's ε̂ at an x̂ of the other's scale is off by their ratio (the
  mixture of issue 33 collapsed to one mode). One eps_fn call on a doubled batch
  [2B, ...] (2 network evaluations per ODE evaluation).
  Args: scale, log_sigma: float32 [T] tables; x_hat [B, ...]; log_s: scalar.
  """
  T = log_sigma.shape[0]
  u = jnp.interp(log_s, log_sigma, jnp.arange(T, dtype=log_sigma.dtype))
  j = jnp.clip(jnp.floor(u).astype(jnp.int32), 0, max(T - 2, 0))
  k = jnp.minimum(j + 1, T - 1)
  w = jnp.clip(u - j, 0.0, 1.0).astype(x_hat.dtype)
  b = x_hat.shape[0]
  xs = jnp.concatenate([scale[j] * x_hat, scale[k] * x_hat], axis=0).astype(jnp.float32)
  ts = jnp.concatenate([jnp.full((b,), j, jnp.int32), jnp.full((b,), k, jnp.int32)])
  eps = as_prediction(eps_fn(xs, ts)).eps.astype(x_hat.dtype)
  sigma = jnp.exp(log_s)
  return ((1.0 - w) * jnp.exp(log_sigma[j]) / sigma * eps[:b]
          + w * jnp.exp(log_sigma[k]) / sigma * eps[b:])


def data_prediction(eps_fn, x: Array, level, alpha, sigma, clip=None) -> Array:
  """x_θ = (x − σ ε̂)/α at one level (DPM-Solver++'s data prediction, Lu et al. 2022b eq. 8),
  clipped to ``clip`` = (lo, hi) when given (its static thresholding, §3.3)."""
  x0 = (x - sigma * eps_at(eps_fn, x, level)) / alpha
  return x0 if clip is None else jnp.clip(x0, clip[0], clip[1])

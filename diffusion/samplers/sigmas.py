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
  """ε̂ of eps_fn at one level t (python or traced int scalar) for a batch x [B, ...]."""
  return as_prediction(eps_fn(x, jnp.full((x.shape[0],), t, jnp.int32))).eps


def interpolated_eps(eps_fn, scale: Array, log_sigma: Array, x_hat: Array, log_s) -> Array:
  """ε̂(x̂, σ) at a continuous σ between the discrete levels, for the ODE.

  With u the fractional level where log σ_u = log σ (σ piecewise log-linear in t
  between levels), j = ⌊u⌋ and w = u − j:
    ε̂ = (1 − w) ε_θ(s_j x̂, j) + w ε_θ(s_{j+1} x̂, j + 1),
  each level seeing x̂ at its own signal scale (EDM's VP wrapper). One eps_fn call
  on a doubled batch [2B, ...] (2 network evaluations per ODE evaluation).
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
  return (1.0 - w) * eps[:b] + w * eps[b:]

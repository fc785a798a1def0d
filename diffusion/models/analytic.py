"""Exact eps / score of a Gaussian mixture seen through a noise level.

If the data are x0 ~ sum_k w_k N(mu_k, Sigma_k) and a level noises them as
x = a * x0 + s * z, z ~ N(0, I) (VP: a = sqrt(alpha_bar_t), s = sqrt(1 - alpha_bar_t);
VE: a = 1, s = sigma_t), the noised density is again a mixture,

  p(x) = sum_k w_k N(x; a mu_k, C_k),   C_k = a^2 Sigma_k + s^2 I,

so its score and the optimal noise prediction are known in closed form:

  grad log p(x) = -sum_k r_k(x) C_k^{-1} (x - a mu_k),  r_k = softmax_k(log w_k + log N_k(x)),
  eps(x) = -s * grad log p(x).

This is the Bayes-optimal eps_theta, useful to test samplers without training.
Each Sigma_k is diagonalised once (float64 numpy, Sigma_k = U_k diag(lam_k) U_k^T), so
C_k^{-1} and log det C_k for any (a, s) are diagonal in that basis; responsibilities
use logsumexp/softmax, so far-out x does not underflow.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from diffusion.models.network import Network
from diffusion.options import declare


def _freeze(a: Any) -> Any:
  """Nested tuples of floats from an array-like (keeps the module hashable)."""
  a = np.asarray(a, np.float64)
  return float(a) if a.ndim == 0 else tuple(_freeze(v) for v in a)


class AnalyticMixture(nn.Module):
  """Parameter-free module returning the exact eps of a noised Gaussian mixture.

  Attributes:
    weights: [K] positive mixture weights (normalised to sum 1).
    means: [K, D], or [K, *event_shape] (e.g. [1, H, W, C] for image Gaussians).
    covs: covariances of the components, one of
      * [K, D, D] full covariance matrices (symmetric positive definite),
      * means' shape: diagonal variances per coordinate,
      * [K]: isotropic variances (Sigma_k = covs[k] * I).
    Arrays or nested tuples (tuples keep the module hashable).

  All methods take x [B, *event_shape] (flattened to [B, D] inside) and the level's
  signal_scale a and noise_std s as [B] arrays or scalars. They compute in
  float32 (float64 when x is float64). noise_std may be 0 only for
  positive-definite covariances.
  """
  weights: Any
  means: Any
  covs: Any

  @property
  def is_exact(self) -> bool:
    """The exact ε of known data: nothing to train, and called with the level's signal
    scale and noise std instead of a noise-level input (:mod:`diffusion.core.model_fn`)."""
    return True

  @classmethod
  def gaussian(cls, mean: Any, std: Any) -> "AnalyticMixture":
    """One Gaussian N(mean, diag(std^2)) of any event shape (std broadcast to mean)."""
    mean = np.asarray(mean, np.float64)
    var = np.broadcast_to(np.asarray(std, np.float64) ** 2, mean.shape)
    return cls(weights=(1.0,), means=_freeze(mean[None]), covs=_freeze(var[None]))

  @classmethod
  def diagonal(cls, weights: Any, means: Any, stds: Any) -> "AnalyticMixture":
    """Mixture with axis-aligned components: stds [K] (isotropic) or [K, D]."""
    means = np.asarray(means, np.float64)
    stds = np.asarray(stds, np.float64)
    if stds.ndim == 1:
      stds = stds.reshape((-1,) + (1,) * (means.ndim - 1))
    var = np.broadcast_to(stds ** 2, means.shape)
    return cls(weights=_freeze(weights), means=_freeze(means), covs=_freeze(var))

  def _components(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """float64 (log_w [K], mu [K, D], U [K, D, D] or None, lam [K, D])."""
    w = np.asarray(self.weights, np.float64)
    mu = np.asarray(self.means, np.float64)
    cov = np.asarray(self.covs, np.float64)
    k = w.shape[0]
    if w.ndim != 1 or mu.shape[0] != k or mu.ndim < 2 or np.any(w <= 0):
      raise ValueError(f"AnalyticMixture: need weights [K] > 0 and means [K, ...]; "
                       f"got {w.shape} and {mu.shape}")
    mu = mu.reshape(k, -1)
    d = mu.shape[1]
    u = None
    if cov.shape == (k,):
      lam = np.repeat(cov[:, None], d, axis=1)
    elif cov.shape == np.asarray(self.means).shape:
      lam = cov.reshape(k, d)
    elif cov.shape == (k, d, d):
      if not np.allclose(cov, np.swapaxes(cov, 1, 2)):
        raise ValueError("AnalyticMixture: covariance matrices must be symmetric")
      lam, u = np.linalg.eigh(cov)  # cov[k] = u[k] @ diag(lam[k]) @ u[k].T
    else:
      raise ValueError(f"AnalyticMixture: covs shape {cov.shape} is not [K], "
                       f"means' shape or [K, D, D] with K={k}, D={d}")
    if np.any(lam < -1e-12):
      raise ValueError("AnalyticMixture: covariances must be positive semi-definite")
    return np.log(w / w.sum()), mu, u, np.maximum(lam, 0.0)

  def _terms(self, x: jax.Array, signal_scale, noise_std):
    """Per-component log joint [B, K] and gradients of log N_k [B, K, D]."""
    dtype = jnp.float64 if x.dtype == jnp.float64 else jnp.float32
    log_w, mu, u, lam = (None if v is None else jnp.asarray(v, dtype)
                         for v in self._components())
    b = x.shape[0]
    xf = x.reshape(b, -1).astype(dtype)
    if xf.shape[1] != mu.shape[1]:
      raise ValueError(f"AnalyticMixture: x {x.shape} has {xf.shape[1]} dims, "
                       f"the mixture {mu.shape[1]}")
    a = jnp.broadcast_to(jnp.asarray(signal_scale, dtype), (b,))[:, None, None]
    s = jnp.broadcast_to(jnp.asarray(noise_std, dtype), (b,))[:, None, None]
    diff = xf[:, None, :] - a * mu[None]                        # [B, K, D]
    y = diff if u is None else jnp.einsum("bkd,kde->bke", diff, u)  # U^T diff
    var = a ** 2 * lam[None] + s ** 2                           # eigenvalues of C_k
    white = y / var                                             # U^T C^-1 diff
    log_n = -0.5 * jnp.sum(y * white + jnp.log(2 * jnp.pi * var), axis=-1)
    grad = -(white if u is None else jnp.einsum("kde,bke->bkd", u, white))
    return log_w[None] + log_n, grad

  def log_prob(self, x: jax.Array, signal_scale, noise_std) -> jax.Array:
    """log p(x) of the noised mixture, x [B, *event_shape] -> [B] (nats)."""
    log_joint, _ = self._terms(x, signal_scale, noise_std)
    return jax.nn.logsumexp(log_joint, axis=1)

  def score(self, x: jax.Array, signal_scale, noise_std) -> jax.Array:
    """grad_x log p(x), x [B, *event_shape] -> same shape, float32 (float64 for float64 x)."""
    log_joint, grad = self._terms(x, signal_scale, noise_std)
    resp = jax.nn.softmax(log_joint, axis=1)                    # r_k(x), [B, K]
    return jnp.einsum("bk,bkd->bd", resp, grad).reshape(x.shape)

  def __call__(self, x: jax.Array, signal_scale, noise_std, train: bool = False) -> jax.Array:
    """eps(x) = -noise_std * score(x): x [B, *event_shape] -> same shape.

    ``train`` is ignored (kept for the common module signature).
    """
    del train
    score = self.score(x, signal_scale, noise_std)
    s = jnp.broadcast_to(jnp.asarray(noise_std), (x.shape[0],)).astype(score.dtype)
    return -s.reshape((-1,) + (1,) * (x.ndim - 1)) * score


def build(mixture: Sequence[Any]) -> AnalyticMixture:
  """The exact ε of the data's diagonal mixture ``(weights [K], means [K, D], stds [K])``."""
  return AnalyticMixture.diagonal(*mixture)


NETWORK = Network("the exact eps of the data's Gaussian mixture (no parameters)", build,
                  declare(build), convolutional=False)

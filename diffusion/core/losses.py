"""Training losses: ε-MSE (L_simple ≡ NCSN's DSM) and variational-bound terms.

Every function returns per-example values ([B]) or elementwise values so that
callers can weight and reduce them.

  * ε-MSE (Ho et al. 2020 eq. 14, mean over dimensions). On the VE process it
    *is* NCSN's denoising score matching with λ(σ) = σ² (Song & Ermon 2019
    eq. 6): with s_θ = −ε̂/σ and x̃ = x + σε,
      ½ σ² ‖s_θ(x̃, σ) + (x̃ − x)/σ²‖² = ½ ‖ε̂ − ε‖²,
    i.e. D/2 times the mean-over-dims ε-MSE.
  * VLB terms in bits/dim (Ho et al. 2020 eq. 5, 13): Gaussian KL for t > 0,
    discretized Gaussian decoder NLL at t = 0; the prior term L_T lives on the
    process (``process.prior_bpd``).
  * Learned variance (Nichol & Dhariwal 2021 §3.1): hybrid L_simple + λ L_vlb
    with a stop-gradient on ε̂ inside the bound, and the pure bound ("kl").
"""

import math
from typing import Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp

from diffusion.errors import ConfigError, check_choice
from diffusion.core.model_fn import as_prediction

# What this module implements (config.diffusion takes these lists).
DIFFUSION_LOSSES = ("mse", "hybrid", "kl")
LOSS_WEIGHTINGS = ("none", "snr", "min_snr_5")
DECODERS = ("discretized", "gaussian")

Array = jax.Array
_LN2 = math.log(2.0)


def mean_flat(x: Array) -> Array:
  """Mean over every axis but the first: [B, ...] -> [B]."""
  return jnp.mean(x.reshape(x.shape[0], -1), axis=1)


def normal_kl(mean1: Array, logvar1: Array, mean2: Array, logvar2: Array) -> Array:
  """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) in nats, elementwise (broadcasting)."""
  return 0.5 * (-1.0 + logvar2 - logvar1 + jnp.exp(logvar1 - logvar2)
                + jnp.square(mean1 - mean2) * jnp.exp(-logvar2))


def approx_standard_normal_cdf(x: Array) -> Array:
  """Φ(x) ≈ ½(1 + tanh(√(2/π)(x + 0.044715 x³))) (the DDPM code's approximation)."""
  return 0.5 * (1.0 + jnp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def discretized_gaussian_log_likelihood(x: Array, means: Array, log_scales: Array) -> Array:
  """log p(x) of 8-bit data under a Gaussian discretized to 256 bins (DDPM eq. 13).

  Bins are [x − 1/255, x + 1/255] in [−1, 1] units; the edge bins extend to
  ∓∞. Probabilities are floored at 1e−12 as in the DDPM code.

  Args:
    x: [B, ...] data in [−1, 1] on the 8-bit grid; means: x's shape;
    log_scales: log standard deviation (½ log-variance), broadcastable to x.
  Returns:
    log-likelihood in nats, x's shape.
  """
  centered = x - means
  inv_std = jnp.exp(-log_scales)
  cdf_plus = approx_standard_normal_cdf(inv_std * (centered + 1.0 / 255.0))
  cdf_min = approx_standard_normal_cdf(inv_std * (centered - 1.0 / 255.0))
  log_cdf_plus = jnp.log(jnp.maximum(cdf_plus, 1e-12))
  log_one_minus_cdf_min = jnp.log(jnp.maximum(1.0 - cdf_min, 1e-12))
  log_delta = jnp.log(jnp.maximum(cdf_plus - cdf_min, 1e-12))
  return jnp.where(x < -0.999, log_cdf_plus,
                   jnp.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def loss_weights(process, t: Array, weighting: str) -> Array:
  """Per-example weight on the ε-MSE, [B] float32.

  none:      1.
  snr:       SNR_t.
  min_snr_5: min(SNR_t, 5)/SNR_t, Min-SNR-γ for ε-prediction (Hang et al.
             2023, γ = 5), i.e. the x₀-space weight min(SNR_t, 5).
  Since ‖ε − ε̂‖² = SNR_t ‖x₀ − x̂₀‖², an ε-weight w is an x₀-weight w·SNR_t.
  """
  check_choice("diffusion.loss_weighting", weighting, LOSS_WEIGHTINGS)
  if weighting == "none":
    return jnp.ones(jnp.shape(t), jnp.float32)
  snr = process.snr(t)
  if weighting == "snr":
    return snr
  return jnp.minimum(snr, 5.0) / snr


def eps_mse(eps_pred: Array, noise: Array, weights: Optional[Array] = None) -> Array:
  """L_simple: mean over dims of (ε̂ − ε)², optionally times per-example weights.

  Args:
    eps_pred, noise: [B, ...]; weights: [B] or None.
  Returns:
    [B] float32.
  """
  mse = mean_flat(jnp.square(eps_pred - noise))
  return mse if weights is None else weights * mse


def gaussian_log_likelihood(x: Array, means: Array, log_scales: Array) -> Array:
  """log N(x; mean, exp(log_scale)²), elementwise nats (a continuous-data decoder)."""
  return -0.5 * (jnp.log(2.0 * jnp.pi) + 2.0 * log_scales
                 + jnp.square(x - means) * jnp.exp(-2.0 * log_scales))


def vb_terms_bpd(process, x0: Array, x_t: Array, t: Array, eps_pred: Array,
                 var_type: str, v: Optional[Array] = None,
                 clip_range: Optional[Tuple[float, float]] = None,
                 decoder: str = "discretized") -> Array:
  """One term of the variational bound, in bits/dim (DDPM eq. 5; code ``_vb_terms_bpd``).

  t > 0: KL(q(x_{t−1} | x_t, x₀) ‖ p(x_{t−1} | x_t)), mean over dims / ln 2.
  t = 0: −log p(x₀ | x₁) / ln 2 under the ``decoder``: ``discretized``, DDPM's
    discretized Gaussian on 8-bit data in [−1, 1]; ``gaussian``, the Gaussian
    density for continuous data (toy sets; a density, so it can be negative).

  Args:
    process: a VPProcess.
    x0, x_t, eps_pred: [B, ...]; t: int32 [B]; var_type, v: as
      ``process.p_log_variance``; clip_range: clip for x̂₀ (None: no clip).
  Returns:
    [B] float32 bits/dim.
  """
  check_choice("diffusion.decoder", decoder, DECODERS)
  if not process.has_likelihood_bound:
    raise ValueError("vb_terms_bpd needs a VP process (data in [-1, 1] on an 8-bit grid).")
  true_mean, _, true_log_var = process.q_posterior(x0, x_t, t)
  mean, log_var, _ = process.p_mean_variance(x_t, t, eps_pred, var_type, v, clip_range)
  kl = mean_flat(normal_kl(true_mean, true_log_var, mean, log_var)) / _LN2
  log_lik = (discretized_gaussian_log_likelihood if decoder == "discretized"
             else gaussian_log_likelihood)
  nll = -mean_flat(log_lik(x0, mean, 0.5 * jnp.broadcast_to(log_var, x0.shape))) / _LN2
  return jnp.where(t == 0, nll, kl)


def training_losses(process, eps_fn: Callable, x0: Array, t: Array, noise: Array, *,
                    loss: str = "mse", var_type: str = "fixedlarge", hybrid_lambda=0.001,
                    loss_weighting: str = "none", clip_x0: bool = False,
                    decoder: str = "discretized") -> Dict[str, Array]:
  """Per-example training losses for one batch.

  x_t = q_sample(x₀, t, noise); out = eps_fn(x_t, t) is ε̂ or (ε̂, v).
    mse:    loss = w(t)·mean‖ε̂ − ε‖²  (DDPM L_simple; NCSN DSM on VE)
    hybrid: loss = w(t)·mse + λ·T·vb_t, vb_t with stop_gradient(ε̂), so the
            bound trains only the variance (Improved DDPM §3.1; λ·T = T/1000
            as improved-diffusion's RESCALED_MSE).
    kl:     loss = T·vb_t (an unbiased estimate of L_vlb in bits/dim; DPM /
            Improved DDPM L_vlb).

  Args:
    process: VP or VE process; eps_fn: (x_t [B, ...], t [B]) -> ε̂ or (ε̂, v).
    x0: [B, ...] data; t: int32 [B]; noise: x0-shaped N(0, I).
    loss: mse | hybrid | kl; var_type: the reverse variance (fixedlarge,
      fixedsmall, learned_range); loss_weighting: none | snr | min_snr_5;
      clip_x0: clip x̂₀ to [−1, 1] inside vb_t; decoder: the t = 0 term
      (discretized | gaussian) — the fields of ``config.diffusion``.
    hybrid_lambda: λ of the hybrid loss, a float or a traced scalar (so a
      population of runs can differ in it).
  Returns:
    dict of [B] float32: "loss" (minimised), "mse" (unweighted), and "vb"
    (bits/dim, for hybrid and kl).
  Raises:
    ConfigError: an invalid choice, or a bound loss on the VE process.
  """
  check_choice("diffusion.loss", loss, DIFFUSION_LOSSES)
  if loss != "mse" and not process.has_likelihood_bound:
    raise ConfigError(f"diffusion.loss={loss!r} is not valid for the VE (ncsn) process; "
                      "choose 'mse' (denoising score matching).")
  x_t = process.q_sample(x0, t, noise)
  eps_pred, v = as_prediction(eps_fn(x_t, t), var_type, "diffusion.var_type")
  mse = eps_mse(eps_pred, noise)
  out = {"mse": mse}
  weighted = loss_weights(process, t, loss_weighting) * mse
  if loss == "mse":
    out["loss"] = weighted
    return out
  clip_range = (-1.0, 1.0) if clip_x0 else None
  T = process.num_timesteps
  if loss == "hybrid":
    vb = vb_terms_bpd(process, x0, x_t, t, jax.lax.stop_gradient(eps_pred), var_type, v,
                      clip_range, decoder)
    out["vb"] = vb
    out["loss"] = weighted + hybrid_lambda * T * vb
  else:  # kl
    vb = vb_terms_bpd(process, x0, x_t, t, eps_pred, var_type, v, clip_range, decoder)
    out["vb"] = vb
    out["loss"] = T * vb
  return out

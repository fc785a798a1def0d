"""diffusion/samplers/ddim.py against the exact law of DDIM's chain for Gaussian data
(the method of test_ancestral.py) and DDIM's step variance."""

import jax
import numpy as np

import diffusion
from diffusion import samplers

from tests.samplers.test_ancestral import (_alphas_cumprod, _assert_moments, _x0_affine, D, gaussian_eps_fn, MU_DATA, N, S_DATA, TOL_SE)


def _propagate_ddim(betas, tau, eta, s=S_DATA, mu=MU_DATA):
  """Exact mean/std of DDIM (ermongroup/ddim generalized_steps) with the exact ε."""
  ab = _alphas_cumprod(betas)
  m, v = np.zeros_like(s), np.ones_like(s)
  for j in range(len(tau) - 1, -1, -1):
    at = ab[tau[j]]
    as_ = ab[tau[j - 1]] if j > 0 else 1.0
    p, q = _x0_affine(at, s, mu)
    ep, eq = (1.0 - np.sqrt(at) * p) / np.sqrt(1.0 - at), -np.sqrt(at) * q / np.sqrt(1.0 - at)
    c1 = eta * np.sqrt((1.0 - at / as_) * (1.0 - as_) / (1.0 - at))
    c2 = np.sqrt(1.0 - as_ - c1 ** 2)
    A, B = np.sqrt(as_) * p + c2 * ep, np.sqrt(as_) * q + c2 * eq
    m, v = A * m + B, A * A * v + c1 ** 2
  return m, np.sqrt(v)


def test_ddim_converges_to_true_moments(vp):
  """η = 0: a first-order ODE solver that under-disperses at few steps.

  Band derived from the exact law (``_propagate_ddim``) for s ∈ [0.4, 0.8]:
  std/s − 1 ∈ [−6.6%, −4.0%] at 50 steps (−11.7% … −15.7% at 20, −1.0% …
  −1.7% at 200). The 200-step bias is below the per-dimension MC tolerance
  4.5·SE(std)/s = 4.5/√(2N) = 5.0%.
  """
  betas = np.asarray(vp.betas, np.float64)
  errs = {}
  for steps in (20, 50, 200):
    x = diffusion.sample(gaussian_eps_fn(vp), vp, (N, D), jax.random.PRNGKey(4),
                        dict(method="ddim", num_steps=steps, eta=0.0, clip_x0=False),
                        x0_range=None)
    tau = samplers.ddim_timesteps(1000, steps, "uniform")
    m_exact, sd_exact = _propagate_ddim(betas, tau, 0.0)
    _assert_moments(x, m_exact, sd_exact, f"ddim {steps}")
    rel = np.asarray(x, np.float64).std(0) / S_DATA - 1
    errs[steps] = np.abs(rel).mean()
    if steps == 50:
      exact_rel = sd_exact / S_DATA - 1
      assert np.all((exact_rel > -0.07) & (exact_rel < -0.035))
      # MC band: exact bias ± 4.5 SE of each dimension's std.
      assert np.all(np.abs(rel - exact_rel) < TOL_SE / np.sqrt(2 * N))
    if steps == 200:
      _assert_moments(x, MU_DATA, S_DATA, "ddim 200 vs truth")
  assert errs[20] > errs[50] > errs[200]


def test_ddim_eta0_is_deterministic_given_init(vp):
  init = jax.random.normal(jax.random.PRNGKey(5), (64, D))
  cfg = dict(method="ddim", num_steps=20, eta=0.0, clip_x0=True)
  a = diffusion.sample(gaussian_eps_fn(vp), vp, (64, D), jax.random.PRNGKey(6), cfg, init=init)
  b = diffusion.sample(gaussian_eps_fn(vp), vp, (64, D), jax.random.PRNGKey(7), cfg, init=init)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  cfg1 = dict(cfg, eta=1.0)
  c = diffusion.sample(gaussian_eps_fn(vp), vp, (64, D), jax.random.PRNGKey(6), cfg1, init=init)
  d = diffusion.sample(gaussian_eps_fn(vp), vp, (64, D), jax.random.PRNGKey(7), cfg1, init=init)
  assert np.abs(np.asarray(c) - np.asarray(d)).max() > 1e-3


def test_ddim_eta1_step_std_is_posterior_std(vp):
  """docs/checkable_values.md item 22: t = 500 → 499 with η = 1: σ = √β̃[500] = 0.100256350317."""
  coefs = samplers.ddim_coefficients(vp, np.arange(1000), eta=1.0)
  c1 = np.asarray(coefs["c1"], np.float64)
  np.testing.assert_allclose(c1[500], 0.100256350317, rtol=2e-5)
  b = np.linspace(1e-4, 0.02, 1000)
  ab = np.cumprod(1 - b)
  beta_tilde = b[1:] * (1 - ab[:-1]) / (1 - ab[1:])
  np.testing.assert_allclose(c1[1:] ** 2, beta_tilde, rtol=2e-3)
  assert c1[0] == 0.0  # the last step lands on x̂₀
  # η = 0.5 scales σ; c2² = 1 − ᾱ_s − c1².
  half = samplers.ddim_coefficients(vp, np.arange(1000), eta=0.5)
  np.testing.assert_allclose(np.asarray(half["c1"])[500], 0.5 * 0.100256350317, rtol=2e-5)
  c2 = float(half["c2"][500])
  np.testing.assert_allclose(c2 ** 2, 1 - ab[499] - (0.5 * 0.100256350317) ** 2, rtol=1e-4)

"""diffusion/samplers/ode.py: the probability-flow ODE's log-likelihood, encode/decode and
NFE against single-Gaussian data, where the ODE is linear,
x̂_T − μ = U diag(r) Uᵀ (x̂_0 − μ), r_i = √((λ_i + σ_T²)/(λ_i + σ_0²)), and its
log-likelihood and the true log-density are closed forms."""

import jax
import numpy as np
import pytest

from diffusion import options
from diffusion.models.analytic import AnalyticMixture
from diffusion.samplers import ode

from tests.samplers.test_init import exact_eps, MU, SD, TOL_SE, W


def _gaussian_ode_reference(process, x, mu, cov):
  """(ODE log-likelihood, true log-density) in nats for x [B, D] at level 0, float64."""
  scale, std = process.host_marginal()
  s0, sT = scale[0], scale[-1]
  sig0, sigT = std[0] / s0, std[-1] / sT
  lam, u = np.linalg.eigh(cov)
  d = len(mu)
  xh = np.asarray(x, np.float64) / s0
  r = np.sqrt((lam + sigT ** 2) / (lam + sig0 ** 2))
  xT = mu + ((xh - mu) @ u) * r @ u.T
  prior_var = 1.0 / sT ** 2 if process.kind == "vp" else std[-1] ** 2
  log_prior = -0.5 * (np.sum(xT ** 2, 1) / prior_var + d * np.log(2 * np.pi * prior_var))
  ode_ll = log_prior + np.sum(np.log(r)) - d * np.log(s0)
  c0 = cov + sig0 ** 2 * np.eye(d)
  diff = xh - mu
  true_ll = (-0.5 * np.einsum("bi,ij,bj->b", diff, np.linalg.inv(c0), diff)
             - 0.5 * np.linalg.slogdet(2 * np.pi * c0)[1] - d * np.log(s0))
  return ode_ll, true_ll


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_ode_log_likelihood_single_gaussian(processes, kind):
  """Diagonal Gaussian: the Jacobian is diagonal, so a Rademacher probe gives the exact
  trace; the only errors are the ODE tolerance (1e-5) and the ε interpolation between
  levels, bounded here by 2e-3 nats over D = 3."""
  p = processes[kind]
  mu, s = np.array([0.3, -0.5, 1.0]), np.array([0.5, 0.8, 0.3])
  x = np.random.default_rng(0).normal(mu, s, (16, 3)) * p.host_marginal()[0][0]
  ll, nfe = ode.log_likelihood(exact_eps(p, AnalyticMixture.gaussian(mu, s)), p, x,
                               jax.random.PRNGKey(0), "rademacher")
  ode_ll, true_ll = _gaussian_ode_reference(p, x, mu, np.diag(s ** 2))
  assert np.max(np.abs(np.asarray(ll) - ode_ll)) < 2e-3
  # What separates the ODE's value from the true density is only the prior mismatch,
  # log N(x̂_T; 0, prior) − log p_T(x̂_T) with p_T = N(μ, diag(s²) + σ_T²), O(μ/σ_T) per dim:
  scale, std = p.host_marginal()
  sig_t = std[-1] / scale[-1]
  prior_var = 1.0 / scale[-1] ** 2 if kind == "vp" else std[-1] ** 2
  r = np.sqrt((s ** 2 + sig_t ** 2) / (s ** 2 + (std[0] / scale[0]) ** 2))
  x_t = mu + (x / scale[0] - mu) * r
  var_t = s ** 2 + sig_t ** 2
  mismatch = (-0.5 * np.sum(x_t ** 2 / prior_var + np.log(2 * np.pi * prior_var), 1)
              + 0.5 * np.sum((x_t - mu) ** 2 / var_t + np.log(2 * np.pi * var_t), 1))
  np.testing.assert_allclose(ode_ll - true_ll, mismatch, atol=1e-9)
  assert np.max(np.abs(mismatch)) < 0.1
  assert np.max(np.abs(np.asarray(ll) - true_ll - mismatch)) < 2e-3
  assert 20 < nfe < 2000


def test_ode_log_likelihood_gaussian_probes_unbiased(processes):
  """Correlated 2-D Gaussian: Gaussian probes estimate the trace without bias; the mean
  over 64 probes agrees with the closed form within 4.5 SE (plus the 2e-3 ODE error)."""
  p = processes["vp"]
  mu, cov = np.array([0.5, -0.2]), np.array([[0.5, 0.3], [0.3, 0.4]])
  mix = AnalyticMixture(weights=(1.0,), means=((0.5, -0.2),),
                        covs=(((0.5, 0.3), (0.3, 0.4)),))
  x0 = np.array([0.4, 0.1], np.float64)
  x = np.repeat(x0[None], 64, axis=0)
  ll, _ = ode.log_likelihood(exact_eps(p, mix), p, x, jax.random.PRNGKey(1), "gaussian")
  ll = np.asarray(ll, np.float64)
  ode_ll, _ = _gaussian_ode_reference(p, x[:1], mu, cov)
  assert ll.std() > 1e-3  # the probes do vary
  assert abs(ll.mean() - ode_ll[0]) < TOL_SE * ll.std(ddof=1) / 8 + 2e-3


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_ode_encode_decode_roundtrip(processes, kind):
  """x -> x_T -> x to 1e-3 at rtol = atol = 1e-7. The worst of the 64 points is an
  outlier in the valley between the modes (x = (−0.56, −0.82)), where the decoding
  flow separates the modes and amplifies the solver's error: it came back to 1.2e-3
  (VP) / 2.7e-3 (VE σ_max = 50) at 1e-5 / 1e-6; every other point to < 1e-4."""
  p = processes[kind]
  rng = np.random.default_rng(1)
  comp = rng.random(64) < W[1]
  x = (MU[comp.astype(int)] + SD[comp.astype(int)] * rng.normal(size=(64, 2))).astype(np.float32)
  s = dict(rtol=1e-7, atol=1e-7)
  z, nfe_up = ode.encode(exact_eps(p), p, x, **s)
  back, nfe_down = ode.decode(exact_eps(p), p, z, **s)
  assert np.max(np.abs(np.asarray(back) - x)) < 1e-3
  assert nfe_up > 0 and nfe_down > 0
  prior_std = 1.0 if kind == "vp" else 50.0          # z is at the top level, not x again
  assert abs(np.std(np.asarray(z)) / prior_std - 1) < 0.3


def test_ode_reports_true_nfe(processes):
  p = processes["vp"]
  calls = []
  base = exact_eps(p)

  def counting(x, t):
    jax.debug.callback(lambda: calls.append(1))
    return base(x, t)

  _, nfe = ode.sample_with_nfe(counting, p, (8, 2), jax.random.PRNGKey(0))
  jax.effects_barrier()
  assert nfe == len(calls)


def test_ode_functions_state_the_declared_defaults():
  """ode.py's helpers repeat the solver defaults of its entry point: they must agree."""
  declared = {k: o.default for k, o in ode.OPTIONS.items()}
  for fn in (ode.encode, ode.decode, ode.sample_with_nfe, ode.log_likelihood):
    given = options.keyword_defaults(fn)
    assert given == {k: declared[k] for k in given}, fn.__name__

"""DEIS against independent references.

  * The exponential-integrator weights C_ij = α_{i+1} ∫_{t_i}^{t_{i+1}} ℓ_j(τ) dρ(τ) by
    adaptive quadrature (scipy.integrate.quad, breakpoints at the levels), with ρ(τ) the
    levels' ρ = σ/α continued log-linearly, for the paper's tAB (ℓ in t) and diffusers'
    log-ρ basis; and the log-ρ second-order weights against diffusers' closed form
    (DEISMultistepScheduler: ∫ (log ρ − log c)/(log b − log c) dρ = ρ (log ρ − log c − 1)/
    (log b − log c)).
  * The whole chain (x_{i+1} = (α_{i+1}/α_i) x_i + Σ_j C_ij ε̂_{i−j}, DEIS eq. 14) in float64
    numpy on a fixed nonlinear ε, against the module.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import diffusion
from diffusion.samplers import deis, timesteps
from tests.samplers.test_heun import _eps_jax, _eps_np  # the fixed nonlinear ε


def _rho_fn(p):
  scale, std = p.host_marginal()
  log_rho = np.log(std / scale)
  grid = np.arange(len(log_rho), dtype=np.float64)
  rho = lambda v: math.exp(np.interp(v, grid, log_rho))             # noqa: E731
  slope = lambda v: log_rho[min(int(v), len(log_rho) - 2) + 1] - \
      log_rho[min(int(v), len(log_rho) - 2)]                         # noqa: E731
  return rho, slope, log_rho


def _weight(p, start, stop, nodes, j, basis):
  """∫_start^stop ℓ_j dρ by quad; ℓ_j in t or in log ρ(t)."""
  rho, slope, _ = _rho_fn(p)

  def ell(v):
    x = v if basis == "t" else math.log(rho(v))
    out = 1.0
    for k, node in enumerate(nodes):
      if k != j:
        out *= (x - node) / (nodes[j] - node)
    return out

  lo, hi = min(start, stop), max(start, stop)
  points = [k for k in range(int(math.ceil(lo)), int(math.floor(hi)) + 1)] or None
  val = integrate.quad(lambda v: ell(v) * rho(v) * slope(min(v, hi - 1e-12)), lo, hi,
                       points=points, limit=2000, epsabs=0, epsrel=1e-11)[0]
  return val if stop >= start else -val


@pytest.mark.parametrize("basis,policy", [("t", "round"), ("t", "interpolate"),
                                          ("log_rho", "round")])
def test_weights_by_quadrature(vp, basis, policy):
  m = 6
  r = deis.deis_rows(vp, num_steps=m, deis_basis=basis, sigma_policy=policy)
  u = np.asarray(r["levels"], np.float64)
  _, _, log_rho = _rho_fn(vp)
  alpha = r["alpha_all"]
  for i in range(len(u) - 1):
    order = int(r["order"][i])
    back = u[i - np.arange(order)]
    nodes = back if basis == "t" else np.interp(back, np.arange(1000.0), log_rho)
    want = [alpha[i + 1] * _weight(vp, u[i], u[i + 1], nodes, j, basis) for j in range(order)]
    got = [r["b0"][i], r["b1"][i], r["b2"][i]][:order]
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-12)


def test_log_rho_second_order_is_diffusers_closed_form(vp):
  """diffusers' multistep_deis_second_order_update: coef1 = ind(ρ_t; ρ_s0, ρ_s1) −
  ind(ρ_s0; ρ_s0, ρ_s1), coef2 the same with s0, s1 swapped, x_t = α_t (x/α_s0 + coef1 ε_0 +
  coef2 ε_1)."""
  def ind(t, b, c):
    return t * (-np.log(c) + np.log(t) - 1) / (np.log(b) - np.log(c))
  r = deis.deis_rows(vp, num_steps=20, deis_order=2, deis_basis="log_rho",
                     deis_skip="time_uniform")
  rho = r["sigma_all"] / r["alpha_all"]
  for i in range(1, 18):                                            # second-order steps
    assert r["order"][i] == 2
    t, s0, s1 = rho[i + 1], rho[i], rho[i - 1]
    coef1 = ind(t, s0, s1) - ind(s0, s0, s1)
    coef2 = ind(t, s1, s0) - ind(s0, s1, s0)
    np.testing.assert_allclose([r["b0"][i], r["b1"][i]],
                               [r["alpha_all"][i + 1] * coef1, r["alpha_all"][i + 1] * coef2],
                               rtol=1e-9)


def test_log_rho_lowers_its_last_orders_below_15_steps_like_diffusers(vp):
  r = deis.deis_rows(vp, num_steps=8, deis_basis="log_rho")
  np.testing.assert_array_equal(r["order"], [1, 2, 3, 3, 3, 3, 2, 1])
  r = deis.deis_rows(vp, num_steps=8)                               # tAB: the paper's, no
  np.testing.assert_array_equal(r["order"], [1, 2, 3, 3, 3, 3, 3, 3])


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_chain_matches_deis_eq14(kind):
  p = (diffusion.make_process(dict(variant="ddpm", schedule="linear", num_timesteps=1000))
       if kind == "vp" else
       diffusion.make_process(dict(variant="ncsn", num_timesteps=1000, sigma_min=0.01,
                                   sigma_max=50.0)))
  m = 7
  levels, alpha, sigma = timesteps.solver_grid(p, m, "time_quadratic", "round")
  u = levels.astype(np.float64)
  x = np.random.default_rng(4).normal(size=(5, 3)) * sigma[0]
  x_T = x.copy()
  past = []
  for i in range(m):
    order = min(3, i + 1)
    eps = [_eps_np(x, levels[i], 1000)] + past[::-1][:order - 1]
    c = [alpha[i + 1] * _weight(p, u[i], u[i + 1], u[i - np.arange(order)], j, "t")
         for j in range(order)]
    past.append(eps[0])
    x = alpha[i + 1] / alpha[i] * x + sum(cj * ej for cj, ej in zip(c, eps))
  got = diffusion.sample(_eps_jax(1000), p, x_T.shape, jax.random.PRNGKey(0),
                         dict(method="deis", num_steps=m), init=jnp.asarray(x_T, jnp.float32),
                         x0_range=None)
  np.testing.assert_allclose(np.asarray(got), x, rtol=2e-4, atol=2e-4 * np.abs(x).max())

"""diffusion/samplers/heun.py: EDM's step coefficients and Algorithm 1, re-derived in
float64 numpy on a fixed nonlinear ε-function."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffusion
from diffusion.samplers import heun

from tests.samplers.test_init import sampler_options

# ---- step coefficients against float64 re-derivations of the papers ---------------


def _nearest(table, v):
  return int(np.argmin([abs(v - u) for u in table]))


@pytest.mark.parametrize("kind", ["vp", "ve"])
@pytest.mark.parametrize("churn", [0.0, 40.0])
def test_heun_coefficients_edm(processes, kind, churn):
  p = processes[kind]
  st = sampler_options("heun", num_steps=12, s_churn=churn, s_tmin=0.05, s_tmax=50.0)
  c = heun.heun_coefficients(p, **st)
  scale, std = p.host_marginal()
  sig = std / scale                                   # EDM VP: √(1/ᾱ − 1); VE: σ
  n, rho = 12, 7.0
  for i in range(n):
    raw = (sig[-1] ** (1 / rho) + i / (n - 1) * (sig[0] ** (1 / rho) - sig[-1] ** (1 / rho))) \
        ** rho                                        # EDM eq. 5
    s_i = sig[_nearest(sig, raw)]
    gamma = min(churn / n, math.sqrt(2) - 1) if 0.05 <= s_i <= 50.0 else 0.0
    j_hat = _nearest(sig, s_i * (1 + gamma))
    np.testing.assert_allclose(c["sigma"][i], s_i, rtol=1e-12)
    assert c["t_hat"][i] == j_hat
    np.testing.assert_allclose(c["scale_hat"][i], scale[j_hat], rtol=1e-12)
    np.testing.assert_allclose(c["noise"][i], math.sqrt(sig[j_hat] ** 2 - s_i ** 2), rtol=1e-9,
                               atol=1e-12)
  assert c["sigma_next"][-1] == 0 and c["second"][-1] == 0 and c["second"][:-1].all()
  plan = heun.make_plan(p, **st)                      # float32 rows of the float64 table
  np.testing.assert_allclose(np.asarray(plan.rows["sigma_hat"]), c["sigma_hat"], rtol=1e-6)


# ---- the published algorithms on a fixed nonlinear ε ------------------------------


def _eps_np(x, t, T):
  return np.tanh(x) * (0.5 + t / T) + 0.1 * np.sin(3 * x)


def _eps_jax(T):
  def f(x, t):
    tt = t.astype(jnp.float32)[:, None] / T
    return jnp.tanh(x) * (0.5 + tt) + 0.1 * jnp.sin(3 * x)
  return f


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_heun_matches_edm_algorithm_1(processes, kind):
  p = processes[kind]
  T, n = 1000, 10
  scale, std = p.host_marginal()
  sig = std / scale
  x_T = np.random.default_rng(2).normal(size=(5, 3)) * (1.0 if kind == "vp" else 50.0)
  steps = [(sig[-1] ** (1 / 7) + i / (n - 1) * (sig[0] ** (1 / 7) - sig[-1] ** (1 / 7))) ** 7
           for i in range(n)]
  lev = [_nearest(sig, v) for v in steps]
  t_steps = [sig[j] for j in lev] + [0.0]
  x = x_T / scale[-1]                                           # x̂ = x/s
  for i in range(n):                                            # EDM Algorithm 1
    t_cur, t_next = t_steps[i], t_steps[i + 1]
    d = _eps_np(scale[lev[i]] * x, lev[i], T)                   # d_i = (x − D(x; t_i))/t_i
    x_next = x + (t_next - t_cur) * d
    if t_next != 0:
      d2 = _eps_np(scale[lev[i + 1]] * x_next, lev[i + 1], T)
      x_next = x + (t_next - t_cur) * (0.5 * d + 0.5 * d2)
    x = x_next
  got = diffusion.sample(_eps_jax(T), p, x_T.shape, jax.random.PRNGKey(0),
                         dict(method="heun", num_steps=n), init=jnp.asarray(x_T, jnp.float32))
  np.testing.assert_allclose(np.asarray(got), x, rtol=2e-4, atol=2e-4 * np.abs(x).max())

"""diffusion/samplers/dpm_solver.py: DPM-Solver++(2M)'s coefficients, clipping and
Algorithm 2, re-derived in float64 numpy on a fixed nonlinear ε-function."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import diffusion
from diffusion.samplers import dpm_solver, timesteps

from tests.samplers.test_heun import _eps_jax, _eps_np


def test_dpm_solver_clips_the_data_prediction_of_images(processes):
  """With clip_x0 and an x0_range, every x_θ is clipped: an ε that predicts x_θ far outside
  [−1, 1] still gives samples inside [−1, 1] (the last update is x_θ at α = 1, σ ≈ 0)."""
  p = processes["vp"]
  far = lambda x, t: -3.0 * jnp.ones_like(x)   # noqa: E731  (x_θ = (x + 3σ)/α, large)
  out = diffusion.sample(far, p, (8, 2), jax.random.PRNGKey(0),
                         dict(method="dpm_solver", num_steps=10, denoise=False))
  unclipped = diffusion.sample(far, p, (8, 2), jax.random.PRNGKey(0),
                               dict(method="dpm_solver", num_steps=10, clip_x0=False))
  assert float(jnp.abs(out).max()) <= 1.0 + 0.05 < float(jnp.abs(unclipped).max())


@pytest.mark.parametrize("steps", [8, 15])
def test_dpm_solver_coefficients(processes, steps):
  p = processes["vp"]
  c = dpm_solver.dpm_coefficients(p, steps, "time_uniform")
  scale, std = p.host_marginal()
  ts = [int(round(v)) for v in np.linspace(999, 0, steps + 1)]
  lam = [math.log(scale[t]) - math.log(std[t]) for t in ts]   # λ = log α − log σ
  for i in range(1, steps + 1):
    h = lam[i] - lam[i - 1]
    assert c["t_prev"][i - 1] == ts[i - 1]
    np.testing.assert_allclose(c["ratio"][i - 1], std[ts[i]] / std[ts[i - 1]], rtol=1e-12)
    np.testing.assert_allclose(c["phi"][i - 1], scale[ts[i]] * (1 - math.exp(-h)), rtol=1e-12)
    second = i >= 2 and not (i == steps and steps < 10)
    r = (lam[i - 1] - lam[i - 2]) / h if i >= 2 else None
    np.testing.assert_allclose(c["c_cur"][i - 1], 1 + 1 / (2 * r) if second else 1.0,
                               rtol=1e-12)
    np.testing.assert_allclose(c["c_old"][i - 1], -1 / (2 * r) if second else 0.0,
                               rtol=1e-12, atol=0)


@pytest.mark.parametrize("kind", ["vp", "ve"])
@pytest.mark.parametrize("m", [6, 12])
def test_dpm_solver_matches_algorithm_2(processes, kind, m):
  p = processes[kind]
  T = 1000
  scale, std = p.host_marginal()
  ts = [int(round(v)) for v in np.linspace(T - 1, 0, m + 1)]
  x_T = np.random.default_rng(3).normal(size=(5, 3)) * std[-1]
  x = x_T.copy()
  lam = lambda t: math.log(scale[t]) - math.log(std[t])        # noqa: E731
  x0_prev = None
  for i in range(1, m + 1):                                     # DPM-Solver++(2M), Alg. 2
    s, t = ts[i - 1], ts[i]
    x0 = (x - std[s] * _eps_np(x, s, T)) / scale[s]             # data prediction
    h = lam(t) - lam(s)
    if i == 1 or (i == m and m < 10):                           # first order (+ lower final)
      d = x0
    else:
      r = (lam(s) - lam(ts[i - 2])) / h
      d = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * x0_prev
    x = std[t] / std[s] * x - scale[t] * math.expm1(-h) * d
    x0_prev = x0
  got = diffusion.sample(_eps_jax(T), p, x_T.shape, jax.random.PRNGKey(0),
                         dict(method="dpm_solver", num_steps=m, dpm_skip="time_uniform"),
                         init=jnp.asarray(x_T, jnp.float32), x0_range=None)
  np.testing.assert_allclose(np.asarray(got), x, rtol=2e-4, atol=2e-4 * np.abs(x).max())


# DPM-Solver++(3M) and SDE-DPM-Solver++(2M) against independent references.
#
#   * 3M: the official third-order multistep update (D1_0, D1_1, D1, D2; φ1 = e^{−h} − 1,
#     φ2 = φ1/h + 1, φ3 = φ2/h − 1/2), the same in diffusers' DPMSolverMultistepScheduler,
#     written here in float64 numpy and run on a fixed nonlinear ε against the module's chain;
#     its order schedule (warm-up, lower order at the end below 10 steps).
#   * What 3M integrates: σ_t ∫ e^λ p(λ) dλ of the quadratic p through the last three data
#     predictions, by quadrature, equals the published update with D2's weight doubled — the
#     published 3M weighs the curvature term by half (module doc).
#   * SDE-2M: its coefficients against the formula of diffusers' ``sde-dpmsolver++``
#     (midpoint) and its noise scale.

def _official_3m(x, ms, lams, lam_t, alpha_t, sigma_t, sigma_s):
  """The published third-order multistep update (data prediction)."""
  m0, m1, m2 = ms
  l0, l1, l2 = lams
  h, h0, h1 = lam_t - l0, l0 - l1, l1 - l2
  r0, r1 = h0 / h, h1 / h
  d1_0, d1_1 = (m0 - m1) / r0, (m1 - m2) / r1
  d1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)
  d2 = (d1_0 - d1_1) / (r0 + r1)
  phi1 = math.expm1(-h)
  phi2 = phi1 / h + 1.0
  phi3 = phi2 / h - 0.5
  return sigma_t / sigma_s * x - alpha_t * phi1 * m0 + alpha_t * phi2 * d1 - alpha_t * phi3 * d2


@pytest.mark.parametrize("kind,m,skip", [("vp", 12, "logsnr"), ("vp", 8, "time_uniform"),
                                         ("ve", 12, "logsnr")])
def test_3m_chain_matches_the_official_update(kind, m, skip):
  p = (diffusion.make_process(dict(variant="ddpm", schedule="linear", num_timesteps=1000))
       if kind == "vp" else
       diffusion.make_process(dict(variant="ncsn", num_timesteps=1000, sigma_min=0.01,
                                   sigma_max=50.0)))
  ts, alpha, sigma = timesteps.solver_grid(p, m, skip, "round")
  lam = np.log(alpha) - np.log(sigma)
  x_T = np.random.default_rng(5).normal(size=(5, 3)) * sigma[0]
  x, ms = x_T.copy(), []
  for i in range(1, m + 1):
    ms.append((x - sigma[i - 1] * _eps_np(x, ts[i - 1], 1000)) / alpha[i - 1])
    order = min(3, i)
    if m < 10:
      order = min(order, m + 1 - i)
    h = lam[i] - lam[i - 1]
    if order == 1:
      x = sigma[i] / sigma[i - 1] * x - alpha[i] * math.expm1(-h) * ms[-1]
    elif order == 2:
      r = (lam[i - 1] - lam[i - 2]) / h
      d = (1 + 0.5 / r) * ms[-1] - 0.5 / r * ms[-2]
      x = sigma[i] / sigma[i - 1] * x - alpha[i] * math.expm1(-h) * d
    else:
      x = _official_3m(x, ms[::-1][:3], lam[i - 1::-1][:3], lam[i], alpha[i], sigma[i],
                       sigma[i - 1])
  got = diffusion.sample(_eps_jax(1000), p, x_T.shape, jax.random.PRNGKey(0),
                         dict(method="dpm_solver", dpm_order=3, num_steps=m, dpm_skip=skip),
                         init=jnp.asarray(x_T, jnp.float32), x0_range=None)
  np.testing.assert_allclose(np.asarray(got), x, rtol=2e-4, atol=2e-4 * np.abs(x).max())


def test_orders_warm_up_and_lower_at_the_end_below_ten_steps():
  np.testing.assert_array_equal(dpm_solver.step_orders(8, 3), [1, 2, 3, 3, 3, 3, 2, 1])
  np.testing.assert_array_equal(dpm_solver.step_orders(12, 3), [1, 2] + [3] * 10)


def test_3m_is_the_quadratic_integral_with_half_its_curvature_term(vp):
  r = dpm_solver.multistep_rows(vp, num_steps=12, dpm_order=3)
  lam_all = np.log(np.append(r["alpha_prev"], r["alpha_out"][-1])) - \
      np.log(np.append(r["sigma_prev"], r["sigma_out"][-1]))
  i = 6                                                             # a third-order step
  assert r["order"][i] == 3
  nodes = lam_all[[i, i - 1, i - 2]]
  lam_t, a_t, s_t = lam_all[i + 1], r["alpha_out"][i], r["sigma_out"][i]

  def exact(j):                                                     # σ_t ∫ e^λ ℓ_j(λ) dλ
    def ell(lam):
      return np.prod([(lam - nodes[k]) / (nodes[j] - nodes[k]) for k in range(3) if k != j])
    return s_t * integrate.quad(lambda lam: math.exp(lam) * ell(lam), nodes[0], lam_t,
                                epsabs=0, epsrel=1e-12)[0]

  exact_w = np.array([exact(j) for j in range(3)])
  published = np.array([r["b0"][i], r["b1"][i], r["b2"][i]])
  e = np.eye(3)                                                     # the update's weight on m_j
  np.testing.assert_allclose(
      published, [_official_3m(0.0, e[j], nodes, lam_t, a_t, s_t, 1.0) for j in range(3)],
      rtol=1e-12)
  h = lam_t - nodes[0]
  phi3 = (math.expm1(-h) / h + 1.0) / h - 0.5
  r0, r1 = (nodes[0] - nodes[1]) / h, (nodes[1] - nodes[2]) / h
  d2 = np.array([1 / r0, -1 / r0 - 1 / r1, 1 / r1]) / (r0 + r1)     # D2 in (m0, m1, m2)
  np.testing.assert_allclose(exact_w, published - a_t * phi3 * d2, rtol=1e-9)   # −2φ3 D2
  assert np.max(np.abs(exact_w - published)) > 1e-4                 # the two do differ


def test_sde_2m_coefficients(vp):
  r = dpm_solver.multistep_rows(vp, num_steps=10, dpm_sde=True)
  lam = np.log(np.append(r["alpha_prev"], r["alpha_out"][-1])) - \
      np.log(np.append(r["sigma_prev"], r["sigma_out"][-1]))
  for i in range(10):
    h = lam[i + 1] - lam[i]
    a_t, s_t, s_s = r["alpha_out"][i], r["sigma_out"][i], r["sigma_prev"][i]
    c = a_t * (1 - math.exp(-2 * h))
    np.testing.assert_allclose(r["a"][i], s_t / s_s * math.exp(-h), rtol=1e-12)
    np.testing.assert_allclose(r["g"][i], s_t * math.sqrt(1 - math.exp(-2 * h)), rtol=1e-12)
    if r["order"][i] == 1:
      np.testing.assert_allclose([r["b0"][i], r["b1"][i]], [c, 0.0], rtol=1e-12, atol=0)
    else:                                       # midpoint: c (m0 + (m0 − m1)/(2 r0))
      r0 = (lam[i] - lam[i - 1]) / h
      np.testing.assert_allclose([r["b0"][i], r["b1"][i]], [c * (1 + 0.5 / r0), -c * 0.5 / r0],
                                 rtol=1e-12)
  assert list(r["order"]) == [1] + [2] * 9           # 10 steps: no lower order at the end


def test_sde_2m_draws_from_its_key(vp):
  eps = _eps_jax(1000)
  kw = dict(method="dpm_solver", dpm_sde=True, num_steps=10)
  a, b, c = (np.asarray(diffusion.sample(eps, vp, (4, 3), jax.random.PRNGKey(k), kw,
                                         x0_range=None)) for k in (0, 0, 1))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)

"""UniPC against an independent float64 re-derivation.

The test writes the paper's multistep UniPC (Zhao et al. 2023, Alg. 2 with eqs. 11–12 and
Theorem 3.1) in float64 numpy: φ_j(z) = ∫_0^1 e^{(1−τ)z} τ^{j−1}/(j−1)! dτ by quadrature
(scipy; not the module's recursion), the order conditions R ρ = g solved for the
predictor (the first p − 1) and the corrector (all p), the official code's order
schedule (warm-up min(order, i), lower order at the end min(order, M + 1 − i), no
corrector after the last step), and checks the module's chain on a fixed nonlinear ε,
for both B(h), orders 1–3, two grids, VP and VE. With diffusers' conventions
(time_uniform, round) this is UniPCMultistepScheduler's sequence of updates.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import diffusion
from diffusion.samplers import timesteps, unipc
from tests.samplers.test_heun import _eps_jax, _eps_np  # the fixed nonlinear ε


def _phi(j, z):
  """φ_j(z) = ∫_0^1 e^{(1−τ) z} τ^{j−1}/(j−1)! dτ (j ≥ 1)."""
  return integrate.quad(lambda tau: math.exp((1 - tau) * z) * tau ** (j - 1)
                        / math.factorial(j - 1), 0.0, 1.0, epsabs=1e-15, epsrel=1e-13)[0]


def _weights(h, rks, p, b_kind):
  hh = -h
  b_h = hh if b_kind == "bh1" else math.expm1(hh)
  r = np.append(rks, 1.0)
  big_r = np.array([r ** (j - 1) for j in range(1, p + 1)])
  g = np.array([math.factorial(j) * hh * _phi(j + 1, hh) / b_h for j in range(1, p + 1)])
  rho_p = (np.zeros(0) if p == 1 else np.array([0.5]) if p == 2
           else np.linalg.solve(big_r[:-1, :-1], g[:-1]))
  rho_c = np.array([0.5]) if p == 1 else np.linalg.solve(big_r, g)
  return rho_p, rho_c, b_h


def _unipc_reference(x, levels, alpha, sigma, order, b_kind, T):
  lam = np.log(alpha) - np.log(sigma)
  m = len(levels) - 1

  def model(x, k):                                                  # data prediction x_θ
    return (x - sigma[k] * _eps_np(x, levels[k], T)) / alpha[k]

  ms = [model(x, 0)]
  for i in range(1, m + 1):
    p = i if i < order else min(order, m + 1 - i)
    h = lam[i] - lam[i - 1]
    rks = np.array([(lam[i - 1 - k] - lam[i - 1]) / h for k in range(1, p)])
    d = [(ms[i - 1 - k] - ms[i - 1]) / rks[k - 1] for k in range(1, p)]
    rho_p, rho_c, b_h = _weights(h, rks, p, b_kind)
    base = sigma[i] / sigma[i - 1] * x - alpha[i] * math.expm1(-h) * ms[i - 1]
    x_pred = base - alpha[i] * b_h * sum((rk * dk for rk, dk in zip(rho_p, d)), 0.0)
    if i == m:
      return x_pred
    m_new = model(x_pred, i)
    x = base - alpha[i] * b_h * (sum((rk * dk for rk, dk in zip(rho_c[:-1], d)), 0.0)
                                 + rho_c[-1] * (m_new - ms[i - 1]))
    ms.append(m_new)
  return x


@pytest.mark.parametrize("kind,skip,order,b_kind,m", [
    ("vp", "time_uniform", 3, "bh2", 8), ("vp", "logsnr", 3, "bh2", 6),
    ("vp", "time_uniform", 2, "bh1", 7), ("vp", "logsnr", 1, "bh2", 5),
    ("ve", "logsnr", 3, "bh2", 8), ("ve", "time_quadratic", 3, "bh1", 4)])
def test_chain_matches_the_papers_algorithm(kind, skip, order, b_kind, m):
  p = (diffusion.make_process(dict(variant="ddpm", schedule="linear", num_timesteps=1000))
       if kind == "vp" else
       diffusion.make_process(dict(variant="ncsn", num_timesteps=1000, sigma_min=0.01,
                                   sigma_max=50.0)))
  levels, alpha, sigma = timesteps.solver_grid(p, m, skip, "round")
  x_T = np.random.default_rng(3).normal(size=(5, 3)) * sigma[0]
  want = _unipc_reference(x_T.copy(), levels, alpha, sigma, order, b_kind, 1000)
  got = diffusion.sample(_eps_jax(1000), p, x_T.shape, jax.random.PRNGKey(0),
                         dict(method="unipc", num_steps=m, unipc_order=order,
                              unipc_variant=b_kind, dpm_skip=skip),
                         init=jnp.asarray(x_T, jnp.float32), x0_range=None)
  np.testing.assert_allclose(np.asarray(got), want, rtol=2e-4, atol=2e-4 * np.abs(want).max())


def test_grid_on_diffusers_linspace_levels(vp):
  """diffusers' UniPCMultistepScheduler with timestep_spacing='linspace' steps through
  round(linspace(0, T − 1, M + 1))[::-1]: the module's time_uniform grid under round."""
  levels, _, _ = timesteps.solver_grid(vp, 10, "time_uniform", "round")
  np.testing.assert_array_equal(levels, np.linspace(0, 999, 11).round()[::-1].astype(int))


def test_orders_warm_up_and_lower_at_the_end():
  np.testing.assert_array_equal(unipc.step_orders(8, 3), [1, 2, 3, 3, 3, 3, 2, 1])
  np.testing.assert_array_equal(unipc.step_orders(3, 3), [1, 2, 1])

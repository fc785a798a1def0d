"""diffusion/samplers/dpm_solver.py: DPM-Solver++(2M)'s coefficients, clipping and
Algorithm 2, re-derived in float64 numpy on a fixed nonlinear ε-function."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffusion
from diffusion.samplers import dpm_solver

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

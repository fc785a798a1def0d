"""iPNDM against independent references.

  * The Adams–Bashforth weights re-derived: ∫_0^1 ℓ_k(τ) dτ of the Lagrange basis on the
    nodes 0, −1, …, −(p−1), by exact polynomial integration in float64.
  * The rows re-derived from EDM eq. 5 and the process's float64 table (the DDIM
    coefficient s_{i+1}(σ_{i+1} − σ_i) times the weights, lower orders first).
  * The whole chain against diff-sampler's ``ipndm_sampler`` loop written here in float64
    numpy (in x̂ = x/s, d = (x̂ − D)/σ), on a fixed nonlinear ε, under both σ policies.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffusion
from diffusion.samplers import ipndm
from tests.samplers.test_heun import _eps_jax, _eps_np  # the fixed nonlinear ε


def _ab_weights(p):
  """∫_0^1 ℓ_k(τ) dτ, ℓ_k the Lagrange basis on nodes 0, −1, ..., −(p−1) (newest first)."""
  nodes = -np.arange(p, dtype=np.float64)
  out = []
  for k in range(p):
    poly = np.poly1d([1.0])
    for j in range(p):
      if j != k:
        poly = poly * np.poly1d([1.0, -nodes[j]]) / (nodes[k] - nodes[j])
    out.append(np.polyint(poly)(1.0) - np.polyint(poly)(0.0))
  return np.array(out)


def test_adams_bashforth_weights_rederived():
  for p in range(1, 5):
    np.testing.assert_allclose(ipndm.AB_WEIGHTS[p - 1], _ab_weights(p), rtol=1e-13)


def _edm_grid(p, m, rho=7.0):
  scale, std = p.host_marginal()
  sig = std / scale
  i = np.arange(m + 1)
  return (sig[-1] ** (1 / rho) + i / m * (sig[0] ** (1 / rho) - sig[-1] ** (1 / rho))) ** rho


@pytest.mark.parametrize("policy", ["round", "interpolate"])
def test_rows_rederived_from_eq5(vp, policy):
  m = 8
  r = ipndm.ipndm_rows(vp, num_steps=m, sigma_policy=policy)
  scale, std = vp.host_marginal()
  sig = std / scale
  grid = _edm_grid(vp, m)
  if policy == "round":
    lev = np.array([np.argmin(np.abs(sig - g)) for g in grid])
    s_grid, a_grid = sig[lev], scale[lev]
    keep = np.append(True, np.diff(lev) != 0)
    s_grid, a_grid = s_grid[keep], a_grid[keep]
  else:
    s_grid, a_grid = grid, 1 / np.sqrt(1 + grid ** 2)
  n = len(s_grid) - 1
  for i in range(n):
    w = _ab_weights(min(4, i + 1))
    want = np.zeros(4)
    want[:len(w)] = a_grid[i + 1] * (s_grid[i + 1] - s_grid[i]) * w
    got = np.array([r["b0"][i], r["b1"][i], r["b2"][i], r["b3"][i]])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(r["a"][i], a_grid[i + 1] / a_grid[i], rtol=1e-12)


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_chain_matches_diff_samplers_loop(kind):
  """Interpolate (every σ on EDM's grid, fractional levels u(σ)); 7 steps of order ≤ 4."""
  p = (diffusion.make_process(dict(variant="ddpm", schedule="linear", num_timesteps=1000))
       if kind == "vp" else
       diffusion.make_process(dict(variant="ncsn", num_timesteps=1000, sigma_min=0.01,
                                   sigma_max=50.0)))
  T, m = 1000, 7
  scale, std = p.host_marginal()
  sig = std / scale
  t_steps = _edm_grid(p, m)
  u = np.interp(np.log(t_steps), np.log(sig), np.arange(T))       # fractional levels
  s = 1 / np.sqrt(1 + t_steps ** 2) if kind == "vp" else np.ones(m + 1)
  x_T = np.random.default_rng(2).normal(size=(5, 3)) * (1.0 if kind == "vp" else 50.0)
  x = x_T / scale[-1]                                               # x̂ at σ_max
  buffer = []
  for i in range(m):                                                # ipndm_sampler
    d = _eps_np(s[i] * x, u[i], T)                                  # d = (x̂ − D)/σ = ε̂
    order = min(4, i + 1)
    c = _ab_weights(order)
    hist = [d] + buffer[::-1][:order - 1]
    x = x + (t_steps[i + 1] - t_steps[i]) * sum(ck * dk for ck, dk in zip(c, hist))
    buffer.append(d)
  want = s[-1] * x                                                  # x at level 0
  got = diffusion.sample(_eps_jax(T), p, x_T.shape, jax.random.PRNGKey(0),
                         dict(method="ipndm", num_steps=m, sigma_policy="interpolate"),
                         init=jnp.asarray(x_T, jnp.float32), x0_range=None)
  np.testing.assert_allclose(np.asarray(got), want, rtol=2e-4, atol=2e-4 * np.abs(want).max())


def test_clipping_bounds_the_denoised_output(vp):
  """ε̂ that predicts x̂₀ far outside [−1, 1]: with clipping every D is in range, so the
  output at level 0 (x = s_0 x̂, σ_0 ≈ 0.01) stays within about σ_0 of [−1, 1]."""
  far = lambda x, t: -3.0 * jnp.ones_like(x)                         # noqa: E731
  out = diffusion.sample(far, vp, (8, 2), jax.random.PRNGKey(0), dict(method="ipndm"))
  free = diffusion.sample(far, vp, (8, 2), jax.random.PRNGKey(0),
                          dict(method="ipndm", clip_x0=False))
  assert float(jnp.abs(out).max()) <= 1.05 < float(jnp.abs(free).max())

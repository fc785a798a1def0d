"""diffusion/samplers/ancestral.py checked against the exact law of the chain for Gaussian
data.

No training: ε̂ is the exact (Bayes-optimal) noise prediction of the data.
For Gaussian data N(μ, diag s²) and a level with signal scale a and noise std n,
  p_t = N(a μ, a² s² + n²),  score = −(x − a μ)/(a² s² + n²),  ε = −n · score.
Every ancestral / DDIM / Langevin step is then affine in x plus Gaussian noise,
so the *exact* law of the sampler's output (including its discretisation bias)
follows from propagating the mean and variance through the steps in float64
numpy (``_propagate_*``, written independently of diffusion/samplers/).
Monte-Carlo tolerances use the standard errors of N samples per dimension:
  SE(mean_d) = sd_d/√N,   SE(std_d) ≈ sd_d/√(2N)   (Gaussian data);
and we allow 4.5 SE on the maximum over D = 16 dimensions (two-sided tail
P(|Z| > 4.5) = 6.8e-6 per dimension, ~1e-4 over 16; the seeds are fixed anyway)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffusion
from diffusion import samplers
from diffusion.errors import ConfigError
from diffusion.samplers import ancestral, timesteps

N = 4096          # samples per run
D = 16            # dimensions of the Gaussian test data
S_DATA = np.linspace(0.4, 0.8, D)
MU_DATA = np.linspace(-0.5, 0.5, D)
TOL_SE = 4.5


def gaussian_eps_fn(process, mu=MU_DATA, s=S_DATA):
  mu = jnp.asarray(mu, jnp.float32)
  s = jnp.asarray(s, jnp.float32)

  def eps_fn(x, t):
    a = process.signal_scale(t)[:, None]
    n = process.noise_std(t)[:, None]
    return n * (x - a * mu) / (a * a * s * s + n * n)
  return eps_fn


# ---- independent float64 propagation of the exact sampler law -----------------


def _alphas_cumprod(betas):
  return np.cumprod(1.0 - np.asarray(betas, np.float64))


def _x0_affine(ab, s, mu):
  """E[x0 | x_t] = p x_t + q for data N(mu, s²) at ᾱ = ab (Tweedie)."""
  V = ab * s * s + (1.0 - ab)
  return np.sqrt(ab) * s * s / V, (1.0 - ab) * mu / V


def _propagate_ancestral(betas, var_type, s=S_DATA, mu=MU_DATA, m0=0.0, v0=1.0):
  """Exact mean/std of DDPM ancestral sampling with the exact ε, no clipping."""
  b = np.asarray(betas, np.float64)
  ab = _alphas_cumprod(b)
  ab_prev = np.append(1.0, ab[:-1])
  m, v = np.full_like(s, m0), np.full_like(s, v0)
  for t in range(len(b) - 1, -1, -1):
    p, q = _x0_affine(ab[t], s, mu)
    c_x0 = b[t] * np.sqrt(ab_prev[t]) / (1.0 - ab[t])
    c_xt = (1.0 - ab_prev[t]) * np.sqrt(1.0 - b[t]) / (1.0 - ab[t])
    A, B = c_x0 * p + c_xt, c_x0 * q
    post = b[t] * (1.0 - ab_prev[t]) / (1.0 - ab[t])
    var = 0.0 if t == 0 else (b[t] if var_type == "fixedlarge" else post)
    m, v = A * m + B, A * A * v + var
  return m, np.sqrt(v)


def _assert_moments(x, mean, std, what):
  x = np.asarray(x, np.float64)
  se_mean = std / np.sqrt(N)
  se_std = std / np.sqrt(2 * N)
  z_mean = np.abs(x.mean(0) - mean) / se_mean
  z_std = np.abs(x.std(0) - std) / se_std
  assert z_mean.max() < TOL_SE, f"{what}: mean off by {z_mean.max():.2f} SE"
  assert z_std.max() < TOL_SE, f"{what}: std off by {z_std.max():.2f} SE"


def _cfg(**kw):
  base = dict(method="ancestral", clip_x0=False)
  base.update(kw)
  return base


# ---- DDPM ancestral ---------------------------------------------------------------


@pytest.mark.parametrize("var_type", ["fixedlarge", "fixedsmall"])
def test_ancestral_reproduces_gaussian_moments(vp, var_type):
  x = diffusion.sample(gaussian_eps_fn(vp), vp, (N, D), jax.random.PRNGKey(1),
                      _cfg(var_type=var_type), x0_range=None)
  # Against the truth N(μ, s²): with 1000 steps the exact law of the chain has
  # |std/s − 1| < 0.3% (fixedlarge) / 1.1% (fixedsmall, under-dispersed), well
  # inside SE(std)/s = 1/√(2N) = 1.1% per dimension.
  m_exact, sd_exact = _propagate_ancestral(np.asarray(vp.betas, np.float64), var_type)
  bias = np.abs(sd_exact / S_DATA - 1).max()
  assert bias < (0.003 if var_type == "fixedlarge" else 0.012)
  _assert_moments(x, MU_DATA, S_DATA if var_type == "fixedlarge" else sd_exact, var_type)
  _assert_moments(x, m_exact, sd_exact, var_type + " exact law")


def test_respaced_ancestral_matches_its_exact_law(vp):
  kept = samplers.space_timesteps(1000, "100")
  ab = np.asarray(vp.alphas_cumprod, np.float64)
  respaced_betas = 1.0 - ab[kept] / np.append(1.0, ab[kept][:-1])
  # The respaced process keeps ᾱ at the kept steps (Improved DDPM respacing).
  rp = vp.respace(kept)
  np.testing.assert_allclose(np.asarray(rp.alphas_cumprod), ab[kept], rtol=2e-5)
  x = diffusion.sample(gaussian_eps_fn(vp), vp, (N, D), jax.random.PRNGKey(2),
                      _cfg(num_steps=100), x0_range=None)
  m_exact, sd_exact = _propagate_ancestral(respaced_betas, "fixedlarge")
  _assert_moments(x, m_exact, sd_exact, "respaced 100")
  # fixedlarge over-disperses when steps are skipped: +1.2% on average at 100 steps.
  assert 0.0 < np.mean(sd_exact / S_DATA - 1) < 0.03


def test_learned_range_endpoints_equal_fixed_variances(vp):
  """v = +1 gives log β_t (fixedlarge), v = −1 gives log β̃_t (fixedsmall)."""
  shape, key = (256, D), jax.random.PRNGKey(3)
  base = gaussian_eps_fn(vp)
  for v, var_type in [(1.0, "fixedlarge"), (-1.0, "fixedsmall")]:
    learned = lambda x, t, v=v: (base(x, t), jnp.full_like(x, v))  # noqa: E731
    a = diffusion.sample(learned, vp, shape, key, _cfg(num_steps=50), x0_range=None)
    b = diffusion.sample(base, vp, shape, key, _cfg(num_steps=50, var_type=var_type),
                        x0_range=None)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
  with pytest.raises(ConfigError, match="sampling.var_type"):
    diffusion.sample(base, vp, shape, key, _cfg(num_steps=50, var_type="learned_range"))


# DDIM Table 1's "σ̂" sampler: ancestral sampling on DDIM's τ.
#
# The rows against ermongroup/ddim's ``ddpm_steps`` written here in float64: with a_t = ᾱ_t
# (a_{−1} = 1) along τ and s the previous element, β_t = 1 − a_t/a_s, x̂₀ =
# x/√a_t − √(1/a_t − 1) ε̂ (clamped), mean = (√a_s β_t x̂₀ + √(1 − β_t)(1 − a_s) x)/(1 − a_t),
# log-variance log β_t, no noise on the last step.

@pytest.mark.parametrize("steps,skip", [(10, "uniform"), (50, "quad"), (100, "quad")])
def test_rows_are_ddpm_steps_on_tau(vp, steps, skip):
  plan = ancestral.make_plan(vp, num_steps=steps, ancestral_steps="ddim_tau", skip_type=skip)
  tau = np.unique(timesteps.ddim_timesteps(1000, steps, skip))    # quad repeats: no-op steps
  a = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000, dtype=np.float64))
  rows = {k: np.asarray(v, np.float64) for k, v in plan.rows.items()}
  np.testing.assert_array_equal(rows["model_t"], tau[::-1])
  for i, t in enumerate(tau[::-1]):                               # the step leaving τ_j = t
    j = len(tau) - 1 - i
    a_t, a_s = a[t], (a[tau[j - 1]] if j > 0 else 1.0)
    beta = 1 - a_t / a_s
    np.testing.assert_allclose(rows["recip_scale"][i], 1 / np.sqrt(a_t), rtol=1e-6)
    np.testing.assert_allclose(rows["eps_to_x0"][i], np.sqrt(1 / a_t - 1), rtol=1e-6)
    np.testing.assert_allclose(rows["coef_x0"][i], np.sqrt(a_s) * beta / (1 - a_t), rtol=2e-5)
    np.testing.assert_allclose(rows["coef_xt"][i], np.sqrt(1 - beta) * (1 - a_s) / (1 - a_t),
                               rtol=2e-5, atol=1e-7)
    if j > 0:
      np.testing.assert_allclose(rows["log_var"][i], np.log(beta), rtol=2e-5)
    assert rows["noise"][i] == (1.0 if j > 0 else 0.0)
  assert plan.options["clip_x0"]


def test_the_default_respacing_is_unchanged(vp):
  """ancestral_steps='respace' (the default) is Improved DDPM's space_timesteps."""
  plan = ancestral.make_plan(vp, num_steps=50)
  np.testing.assert_array_equal(np.asarray(plan.rows["model_t"]),
                                timesteps.space_timesteps(1000, "50")[::-1])

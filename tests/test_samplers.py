"""Samplers checked against closed-form Gaussian laws and the NCSN toy mixture.

No training: ε̂ is the exact (Bayes-optimal) noise prediction of the data.
For Gaussian data N(μ, diag s²) and a level with signal scale a and noise std n,
  p_t = N(a μ, a² s² + n²),  score = −(x − a μ)/(a² s² + n²),  ε = −n · score.
Every ancestral / DDIM / Langevin step is then affine in x plus Gaussian noise,
so the *exact* law of the sampler's output (including its discretisation bias)
follows from propagating the mean and variance through the steps in float64
numpy (``_propagate`` below, written independently of diffusion/samplers.py).
Monte-Carlo tolerances use the standard errors of N samples per dimension:
  SE(mean_d) = sd_d/√N,   SE(std_d) ≈ sd_d/√(2N)   (Gaussian data);
and we allow 4.5 SE on the maximum over D = 16 dimensions (two-sided tail
P(|Z| > 4.5) = 6.8e-6 per dimension, ~1e-4 over 16; the seeds are fixed anyway).
"""

import numpy as np
import pytest

import diffusion

import jax
import jax.numpy as jnp

from diffusion import samplers
from diffusion.errors import ConfigError

N = 4096          # samples per run
D = 16            # dimensions of the Gaussian test data
S_DATA = np.linspace(0.4, 0.8, D)
MU_DATA = np.linspace(-0.5, 0.5, D)
TOL_SE = 4.5


@pytest.fixture(scope="module")
def vp():
  return diffusion.make_process(dict(variant="ddpm", schedule="linear", num_timesteps=1000))


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


# ---- DDIM ----------------------------------------------------------------------------


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


def test_ddim_timestep_selection():
  for S, last in [(10, 900), (20, 950), (50, 980), (100, 990)]:
    tau = samplers.ddim_timesteps(1000, S, "uniform")
    assert len(tau) == S and tau[0] == 0 and tau[-1] == last
  quad = samplers.ddim_timesteps(1000, 50, "quad")
  assert len(quad) == 50 and quad[0] == 0 and quad[-1] == 800
  assert list(samplers.ddim_timesteps(1000, 0, "uniform")) == list(range(1000))


def test_space_timesteps_matches_improved_diffusion():
  """docs/checkable_values.md item 20."""
  s = samplers.space_timesteps(4000, "100")
  assert len(s) == 100 and list(s[:3]) == [0, 40, 81] and list(s[-3:]) == [3918, 3959, 3999]
  assert list(samplers.space_timesteps(1000, "ddim50")) == list(range(0, 1000, 20))
  s = samplers.space_timesteps(1000, "50")
  assert len(s) == 50 and list(s[:3]) == [0, 20, 41] and list(s[-3:]) == [958, 979, 999]


# ---- Langevin ------------------------------------------------------------------------


def _mixture_score(x, var):
  """Score of 0.8 N((5,5), var I) + 0.2 N((−5,−5), var I); x [B, 2], var [B, 1]."""
  means = jnp.array([[5.0, 5.0], [-5.0, -5.0]])
  d = x[:, None, :] - means[None]
  logits = jnp.log(jnp.array([0.8, 0.2]))[None] - 0.5 * jnp.sum(d ** 2, -1) / var
  r = jax.nn.softmax(logits, axis=1)
  return -jnp.sum(r[..., None] * d, axis=1) / var


def _share_in_main_mode(x):
  x = np.asarray(x)
  d1 = ((x - 5.0) ** 2).sum(1)
  d2 = ((x + 5.0) ** 2).sum(1)
  return float(np.mean(d1 < d2))


@pytest.fixture(scope="module")
def toy():
  ve = diffusion.make_process(dict(variant="ncsn", schedule="geometric", num_timesteps=10,
                                   sigma_min=1.0, sigma_max=20.0))
  init = jax.random.uniform(jax.random.PRNGKey(8), (1280, 2), minval=-8.0, maxval=8.0)
  return ve, init


def test_annealed_langevin_recovers_mixture_weights(toy):
  """docs/checkable_values.md item 29: NCSN toy, annealed share of the (5,5) mode ∈ [0.75, 0.83]."""
  ve, init = toy
  np.testing.assert_allclose(np.asarray(ve.sigmas), np.geomspace(1, 20, 10), rtol=1e-6)

  def eps_code(x, t):  # NCSN toy_runner: component std σ_i
    sigma = ve.noise_std(t)[:, None]
    return -sigma * _mixture_score(x, sigma ** 2)

  def eps_exact(x, t):  # exact perturbed density: component std √(1 + σ_i²)
    sigma = ve.noise_std(t)[:, None]
    return -sigma * _mixture_score(x, 1.0 + sigma ** 2)

  # The models helper's AnalyticMixture gives the same exact ε as eps_exact.
  from diffusion.models.analytic import AnalyticMixture  # pylint: disable=import-outside-toplevel
  mixture = AnalyticMixture.diagonal((0.8, 0.2), ((5.0, 5.0), (-5.0, -5.0)), (1.0, 1.0))
  eps_module = lambda x, t: mixture.apply({}, x, ve.signal_scale(t), ve.noise_std(t))  # noqa: E731,E501
  x_probe = init[:16] * 2.0
  t_probe = jnp.arange(16, dtype=jnp.int32) % 10
  np.testing.assert_allclose(np.asarray(eps_module(x_probe, t_probe)),
                             np.asarray(eps_exact(x_probe, t_probe)), rtol=1e-4, atol=1e-5)

  cfg = dict(method="annealed_langevin", n_steps_each=100, step_size=0.1,
             langevin_form="paper", denoise=False)
  for eps_fn in (eps_code, eps_exact):
    x = diffusion.sample(eps_fn, ve, init.shape, jax.random.PRNGKey(9), cfg, init=init)
    share = _share_in_main_mode(x)
    assert 0.75 <= share <= 0.83, share


def test_plain_langevin_misses_mixture_weights(toy):
  """docs/checkable_values.md item 29: plain Langevin (exact data score, ε = 0.1, 1000 steps) ≈ 0.5."""
  _, init = toy
  score = lambda x: _mixture_score(x, jnp.ones((x.shape[0], 1)))  # noqa: E731
  x = samplers.langevin_dynamics(score, init, jax.random.PRNGKey(10), 0.1, 1000, form="paper")
  share = _share_in_main_mode(x)
  assert 0.45 <= share <= 0.55, share


@pytest.mark.parametrize("form", ["code", "paper"])
def test_langevin_forms_and_denoise_follow_exact_gaussian_law(form):
  """Data N(0, 1): at level σ the score is −x/(1 + σ²), so each step is affine.

  code:  x ← (1 − α/v) x + √(2α) z;  paper: x ← (1 − α/(2v)) x + √α z;
  α = ε σ_i²/σ_min², v = 1 + σ_i²; denoise: x ← x (1 − σ_min²/v_min).
  The two forms give variances 2.54 vs 3.19 (> 6 SE apart) after 5 steps per level.
  """
  ve = diffusion.make_process(dict(variant="ncsn", num_timesteps=3, sigma_min=0.5,
                                   sigma_max=2.0))
  eps_fn = lambda x, t: ve.noise_std(t)[:, None] * x / (1.0 + ve.noise_std(t)[:, None] ** 2)  # noqa: E731,E501
  eps_size, k = 0.05, 5
  sig = np.geomspace(0.5, 2.0, 3)
  exact = {}
  for f in ("code", "paper"):
    v = np.float64(4.0)  # prior N(0, σ_max²)
    for s in sig[::-1]:
      alpha, var = eps_size * s * s / 0.25, 1.0 + s * s
      a, noise = ((1 - alpha / var), 2 * alpha) if f == "code" else ((1 - alpha / (2 * var)), alpha)
      for _ in range(k):
        v = a * a * v + noise
    exact[f] = (v, v * (1 - 0.25 / 1.25) ** 2)
  d = 8
  cfg = dict(method="annealed_langevin", n_steps_each=k, step_size=eps_size,
             langevin_form=form, denoise=False)
  for denoise in (False, True):
    x = diffusion.sample(eps_fn, ve, (N, d), jax.random.PRNGKey(11), dict(cfg, denoise=denoise))
    want = exact[form][int(denoise)]
    got = np.asarray(x, np.float64).var(0)
    se = want * np.sqrt(2.0 / N)
    assert np.abs(got - want).max() < TOL_SE * se, (form, denoise, got, want)
  other = exact["paper" if form == "code" else "code"][0]
  assert abs(other - exact[form][0]) > 6 * exact[form][0] * np.sqrt(2.0 / N)


# ---- API details -------------------------------------------------------------------


def test_trajectory_and_init_options(vp):
  small = diffusion.make_process(dict(variant="ddpm", num_timesteps=20))
  init = jax.random.normal(jax.random.PRNGKey(12), (8, D))
  cfg = _cfg(var_type="fixedsmall")
  x, traj = diffusion.sample(gaussian_eps_fn(small), small, (8, D), jax.random.PRNGKey(13),
                            cfg, init=init, x0_range=None, trajectory_every=5)
  assert traj.shape == (5, 8, D)  # x_T and the state after 5, 10, 15, 20 steps
  np.testing.assert_array_equal(np.asarray(traj[0]), np.asarray(init))
  np.testing.assert_array_equal(np.asarray(traj[-1]), np.asarray(x))
  x2 = diffusion.sample(gaussian_eps_fn(small), small, (8, D), jax.random.PRNGKey(13), cfg,
                       init=init, x0_range=None)
  np.testing.assert_allclose(np.asarray(x2), np.asarray(x), atol=1e-6)
  # N not divisible by k: the remainder still runs; 20 // 6 + 1 = 4 states.
  x3, traj3 = diffusion.sample(gaussian_eps_fn(small), small, (8, D), jax.random.PRNGKey(13),
                              cfg, init=init, x0_range=None, trajectory_every=6)
  assert traj3.shape == (4, 8, D)
  np.testing.assert_allclose(np.asarray(x3), np.asarray(x), atol=1e-6)
  # init='uniform' draws x_T ~ U[0, 1] (NCSN's choice).
  _, tu = diffusion.sample(gaussian_eps_fn(small), small, (8, D), jax.random.PRNGKey(14),
                          _cfg(init="uniform"), trajectory_every=20)
  assert float(tu[0].min()) >= 0.0 and float(tu[0].max()) <= 1.0
  # Clipping keeps x̂₀ in x0_range, so samples end inside it.
  xc = diffusion.sample(lambda x, t: jnp.zeros_like(x) - 3.0, small, (8, D),
                       jax.random.PRNGKey(15), _cfg(clip_x0=True))
  assert float(jnp.abs(xc).max()) <= 1.0 + 1e-5


def test_partial_eps_fn_matches_closure(vp):
  """Parameters passed through jax.tree_util.Partial are jit arguments, same result."""
  small = diffusion.make_process(dict(variant="ddpm", num_timesteps=20))
  w = jax.random.normal(jax.random.PRNGKey(16), (D, D)) * 0.1

  def linear_eps(w, x, t):
    return x @ w + 0.01 * t[:, None].astype(jnp.float32)

  cfg = dict(method="ddim", num_steps=10, eta=0.5)
  key = jax.random.PRNGKey(17)
  a = diffusion.sample(jax.tree_util.Partial(linear_eps, w), small, (4, D), key, cfg)
  b = diffusion.sample(lambda x, t: linear_eps(w, x, t), small, (4, D), key, cfg)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cfg, field", [
    (dict(method="euler"), "sampling.method"),
    (dict(method="ddim", skip_type="log"), "sampling.skip_type"),
    (dict(method="ddim", eta=-0.1), "sampling.eta"),
    (dict(method="ddim", num_steps=2000), "sampling.num_steps"),
    (dict(method="ancestral", num_steps=1001), "sampling.num_steps"),
    (dict(method="ancestral", num_steps=-1), "sampling.num_steps"),
    (dict(method="annealed_langevin", num_steps=5), "sampling.num_steps"),
    (dict(method="annealed_langevin", n_steps_each=0), "sampling.n_steps_each"),
    (dict(method="annealed_langevin", step_size=0.0), "sampling.step_size"),
    (dict(method="annealed_langevin", langevin_form="euler"), "sampling.langevin_form"),
    (dict(init="gaussian"), "sampling.init"),
    (dict(var_type="large"), "sampling.var_type"),
    (dict(clip_x0="yes"), "sampling.clip_x0"),
    (dict(denoise=1), "sampling.denoise"),
])
def test_invalid_sampling_config_is_one_line_config_error(vp, cfg, field):
  with pytest.raises(ConfigError) as e:
    diffusion.sample(gaussian_eps_fn(vp), vp, (2, D), jax.random.PRNGKey(0), cfg)
  msg = str(e.value)
  assert field in msg and "\n" not in msg


def test_base_config_sampling_section_is_valid():
  from configs import base  # pylint: disable=import-outside-toplevel
  from diffusion.config import SamplingConfig  # pylint: disable=import-outside-toplevel
  for variant in ("ddpm", "ncsn", "dpm"):
    s = SamplingConfig.parse(base.get_config(variant).sampling)
    assert s.var_type == "fixedlarge"
  assert SamplingConfig.parse(base.get_config("ncsn").sampling).method == "annealed_langevin"


def test_public_sample_parses_then_runs_the_registry_sampler(vp):
  """diffusion.sample (dict settings) equals samplers.sample (plain keyword options)."""
  settings = dict(method="ddim", num_steps=10)
  key = jax.random.PRNGKey(0)
  a = diffusion.sample(gaussian_eps_fn(vp), vp, (4, D), key, settings)
  b = samplers.sample(gaussian_eps_fn(vp), vp, (4, D), key, **settings)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_samplers_describe_themselves_without_a_config():
  """The words a sampler owns: its line in --sampler's help, its cost in a log line, the
  options that name its samples; and a notebook call with plain keywords."""
  assert set(samplers.descriptions()) == set(samplers.SAMPLERS)
  assert samplers.describe(1000, method="ddim", num_steps=50) == "ddim, 50 steps"
  assert samplers.describe(10, method="annealed_langevin", n_steps_each=5) == \
      "annealed_langevin, 10 steps, 5 Langevin steps each"
  assert samplers.named_options("ddim", eta=0.5) == {"eta": 0.5}
  assert samplers.named_options("ancestral") == {}
  with pytest.raises(ConfigError, match="not a sampling option.*did you mean 'num_steps'"):
    samplers.check(1000, method="ddim", num_step=50)
  small = diffusion.make_process(dict(variant="ddpm", num_timesteps=20))
  from diffusion.samplers import ddim  # pylint: disable=import-outside-toplevel
  plan = ddim.make_plan(small, num_steps=5, eta=0.0)
  assert plan.num_steps == 5 and plan.options["eta"] == 0.0

"""diffusion/core/processes.py: VP / VE processes: construction, docs/checkable_values.md
item 8–9 values, posterior vs Bayes, Monte-Carlo composition of steps, conversions,
reverse-step helpers (VE's as score_sde's predictors), respacing in float64, jit/vmap."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffusion

from configs.base import get_config
from diffusion import samplers
from diffusion.core import processes
from diffusion.core import schedules
from diffusion.errors import ConfigError

LINEAR = schedules.get_beta_schedule("linear", 1000)       # float64, tested in test_schedules
NCSN_SIGMAS = schedules.geometric_sigmas(0.01, 1.0, 10)




def np_marginal(kind, t):
  """(signal scale, noise std) of q(x_t | x0) in float64, from the raw schedule."""
  if kind == "vp":
    ab = np.cumprod(1.0 - LINEAR)[t]
    return np.sqrt(ab), np.sqrt(1.0 - ab)
  return np.ones_like(NCSN_SIGMAS[t]), NCSN_SIGMAS[t]


# ---- construction ------------------------------------------------------------------------


def test_make_process_variants():
  for variant, cls, T in (("ddpm", processes.VPProcess, 1000), ("dpm", processes.VPProcess, 1000),
                          ("ncsn", processes.VEProcess, 10)):
    p = diffusion.make_process(get_config(variant).diffusion)
    assert isinstance(p, cls) and p.num_timesteps == T
    arrays = jax.tree_util.tree_leaves(p)
    assert arrays and all(a.dtype == jnp.float32 and a.shape == (T,) for a in arrays)
  p = diffusion.make_process(get_config("dpm").diffusion)
  np.testing.assert_allclose(p.betas, schedules.get_beta_schedule("dpm", 1000), rtol=1e-6)


def test_exposed_arrays(vp, ve):
  np.testing.assert_allclose(vp.betas, LINEAR, rtol=1e-7)
  np.testing.assert_allclose(vp.alphas_cumprod, np.cumprod(1 - LINEAR), rtol=1e-6)
  np.testing.assert_allclose(ve.sigmas, NCSN_SIGMAS, rtol=1e-7)
  assert np.all(np.diff(np.asarray(ve.sigmas)) > 0)


def test_partial_and_dict_configs():
  p = diffusion.make_process({"variant": "ncsn", "sigma_max": 50.0, "num_timesteps": 232})
  np.testing.assert_allclose(p.sigmas[jnp.array([0, -1])], [0.01, 50.0], rtol=1e-6)
  p = diffusion.make_process({"variant": "ddpm", "schedule": "cosine", "num_timesteps": 4000})
  assert p.num_timesteps == 4000


@pytest.mark.parametrize("overrides,field", [
    (dict(variant="vp"), "diffusion.variant"),
    (dict(schedule="geometric"), "diffusion.schedule"),
    (dict(variant="ncsn", schedule="linear"), "diffusion.schedule"),
    (dict(num_timesteps=0), "diffusion.num_timesteps"),
    (dict(beta_end=1.5), "diffusion.beta_end"),
    (dict(variant="ncsn", schedule="geometric", sigma_min=2.0, sigma_max=1.0),
     "diffusion.sigma_min"),
])
def test_bad_config_raises(overrides, field):
  cfg = dict(variant="ddpm", schedule="linear", num_timesteps=1000)
  cfg.update(overrides)
  with pytest.raises(ConfigError) as info:
    diffusion.make_process(cfg)
  assert str(info.value).startswith(field) and "\n" not in str(info.value)


def test_pytree_and_jit(vp):
  leaves, tree = jax.tree_util.tree_flatten(vp)
  assert jax.tree_util.tree_unflatten(tree, leaves).num_timesteps == 1000
  f = jax.jit(lambda p, t: p.snr(t))
  np.testing.assert_allclose(f(vp, jnp.array([0, 999])), [9999.0, 4.0360e-5], rtol=1e-4)


# ---- docs/checkable_values.md item 8 (posterior tables) and item 9 (prior term) ------------------------------


def test_posterior_values_item8(vp):
  t = jnp.arange(1000, dtype=jnp.int32)
  ones, zeros = jnp.ones((1000, 1)), jnp.zeros((1000, 1))
  coef1, var, logvar = vp.q_posterior(ones, zeros, t)   # mean = coef1·x0
  coef2, _, _ = vp.q_posterior(zeros, ones, t)          # mean = coef2·x_t
  var, logvar = var[:, 0], logvar[:, 0]
  assert var[0] == 0.0
  np.testing.assert_allclose(var[1], 5.4531877e-5, rtol=1e-6)
  np.testing.assert_allclose(var[999] / vp.betas[999], 0.99999918, rtol=1e-6)
  np.testing.assert_allclose(logvar[0], -9.8167251, rtol=1e-7)
  fixedlarge = vp.p_log_variance(t, "fixedlarge")
  np.testing.assert_allclose(fixedlarge[:2], [-9.8167251, -9.0286864], rtol=1e-7)
  np.testing.assert_allclose(fixedlarge[2:], np.log(LINEAR[2:]), rtol=1e-6)
  np.testing.assert_allclose([coef1[0, 0], coef2[0, 0]], [1.0, 0.0], atol=0)
  np.testing.assert_allclose([coef1[1, 0], coef2[1, 0]], [0.5452915, 0.4547085], rtol=1e-6)


def test_prior_bpd_item9(vp, ve):
  x = jnp.ones((2, 3, 3, 1)) * jnp.array([1.0, -1.0])[:, None, None, None]
  np.testing.assert_allclose(vp.prior_bpd(x), 2.9113e-5, rtol=1e-4)
  np.testing.assert_allclose(vp.prior_bpd(0.5 * jnp.ones((1, 4))), 7.2787e-6, rtol=1e-4)
  assert float(vp.prior_bpd(jnp.zeros((1, 4)))[0]) < 1e-9
  # Independent float64 closed form KL(N(m, s²) ‖ N(0, 1)) = ½(s² + m² − 1 − ln s²).
  ab = np.cumprod(1 - LINEAR)[-1]
  x0 = np.array([0.3, -0.7, 0.9])
  kl = 0.5 * (1 - ab + ab * x0 ** 2 - 1 - np.log(1 - ab))
  np.testing.assert_allclose(vp.prior_bpd(jnp.asarray(x0)[None]), kl.mean() / math.log(2),
                             rtol=1e-4)
  # VE: q(x_T | x0) = N(x0, σ_max²) vs N(0, σ_max²) -> x0²/(2σ_max²).
  np.testing.assert_allclose(ve.prior_bpd(jnp.asarray(x0)[None]),
                             (x0 ** 2 / 2).mean() / math.log(2), rtol=1e-6)


def test_prior_sample(vp):
  ve50 = diffusion.make_process({"variant": "ncsn", "sigma_max": 50.0, "num_timesteps": 20})
  n = 20000
  for p, std in ((vp, 1.0), (ve50, 50.0)):
    x = p.prior_sample(jax.random.PRNGKey(0), (n,))
    assert x.shape == (n,) and x.dtype == jnp.float32
    se_var = std ** 2 * math.sqrt(2.0 / (n - 1))   # SE of a Gaussian sample variance
    assert abs(float(jnp.var(x)) - std ** 2) < 3 * se_var
    assert abs(float(jnp.mean(x))) < 3 * std / math.sqrt(n)


# ---- posterior against an independent Bayes computation -----------------------------


def bayes_posterior(prior_mean, prior_var, lik_scale, lik_var, x_t):
  """p(y) ∝ N(y; prior_mean, prior_var) · N(x_t; lik_scale·y, lik_var), float64."""
  prec = 1.0 / prior_var + lik_scale ** 2 / lik_var
  mean = (prior_mean / prior_var + lik_scale * x_t / lik_var) / prec
  return mean, 1.0 / prec


def bayes_on_grid(prior_mean, prior_var, lik_scale, lik_var, x_t):
  """Same, by normalising prior × likelihood numerically on a grid (scalars)."""
  center = prior_mean
  width = 12 * math.sqrt(min(prior_var, lik_var / lik_scale ** 2))
  rough, _ = bayes_posterior(prior_mean, prior_var, lik_scale, lik_var, x_t)
  y = np.linspace(rough - width, rough + width, 200001)
  logp = (-(y - center) ** 2 / (2 * prior_var)
          - (x_t - lik_scale * y) ** 2 / (2 * lik_var))
  w = np.exp(logp - logp.max())
  w /= w.sum()
  m = (w * y).sum()
  return m, (w * (y - m) ** 2).sum()


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_posterior_matches_bayes(kind, vp, ve):
  proc = vp if kind == "vp" else ve
  T = proc.num_timesteps
  rng = np.random.default_rng(1)
  t = np.array([0, 1, 2, T // 2, T - 2, T - 1], dtype=np.int32)
  x0 = rng.uniform(-1, 1, size=(len(t), 3))
  x_t = rng.normal(size=(len(t), 3))
  mean, var, logvar = proc.q_posterior(jnp.asarray(x0, jnp.float32),
                                       jnp.asarray(x_t, jnp.float32), jnp.asarray(t))
  assert var.shape == (len(t), 1) and logvar.shape == (len(t), 1)
  for i, ti in enumerate(t):
    if ti == 0:   # the previous "level" is the data itself
      np.testing.assert_allclose(mean[i], x0[i], rtol=1e-6)
      assert var[i, 0] == 0.0
      continue
    if kind == "vp":
      ab = np.cumprod(1 - LINEAR)
      prior_m, prior_v = np.sqrt(ab[ti - 1]) * x0[i], 1 - ab[ti - 1]
      lik_s, lik_v = np.sqrt(1 - LINEAR[ti]), LINEAR[ti]
    else:
      s = NCSN_SIGMAS
      prior_m, prior_v = x0[i], s[ti - 1] ** 2
      lik_s, lik_v = 1.0, s[ti] ** 2 - s[ti - 1] ** 2
    ref_m, ref_v = bayes_posterior(prior_m, prior_v, lik_s, lik_v, x_t[i])
    np.testing.assert_allclose(mean[i], ref_m, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(var[i, 0], ref_v, rtol=2e-6)
    np.testing.assert_allclose(logvar[i, 0], np.log(ref_v), rtol=2e-6, atol=1e-6)
    grid_m, grid_v = bayes_on_grid(prior_m[0], prior_v, lik_s, lik_v, x_t[i, 0])
    np.testing.assert_allclose(mean[i, 0], grid_m, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(var[i, 0], grid_v, rtol=1e-3)
  # Clipped log-variance at t = 0 borrows t = 1.
  np.testing.assert_allclose(logvar[0], logvar[1], rtol=0)


# ---- Monte Carlo: iterating q(x_t | x_{t-1}) gives q(x_t | x0) ------------------------


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_markov_chain_composes_to_marginal(kind, vp, ve):
  """Step-by-step sampling in float64 vs the closed-form mean/var of the process.

  n = 20000 chains per x0; SE(mean) = std/√n, SE(var) = var·√(2/(n−1)) (Gaussian);
  every check is within 3 SE. The seed is fixed (about 30 checks at 3 SE each:
  a correct process passes each with probability 0.997; a wrong coefficient is
  off by many SE, e.g. √β_t in place of √(1 − ᾱ_t) at t = 99 is > 100 SE).
  """
  proc = vp if kind == "vp" else ve
  n = 20000
  x0 = np.array([-1.0, 0.25, 1.0])
  rng = np.random.default_rng(0)
  x = np.broadcast_to(x0, (n, 3)).copy()
  checks = {0, 9, 99, 499, 999} if kind == "vp" else {0, 1, 4, 9}
  prev_var = 0.0
  for t in range(proc.num_timesteps):
    z = rng.normal(size=x.shape)
    if kind == "vp":      # q(x_t | x_{t-1}) = N(√(1−β_t) x_{t−1}, β_t)
      x = np.sqrt(1 - LINEAR[t]) * x + np.sqrt(LINEAR[t]) * z
    else:                 # q(x_t | x_{t-1}) = N(x_{t−1}, σ_t² − σ_{t−1}²)
      x = x + np.sqrt(NCSN_SIGMAS[t] ** 2 - prev_var) * z
      prev_var = NCSN_SIGMAS[t] ** 2
    if t in checks:
      tt = jnp.full((3,), t, jnp.int32)
      mean = np.asarray(proc.signal_scale(tt)) * x0
      var = np.asarray(proc.noise_std(tt)) ** 2
      se_mean = np.sqrt(var / n)
      se_var = var * np.sqrt(2.0 / (n - 1))
      assert np.all(np.abs(x.mean(0) - mean) < 3 * se_mean), (t, x.mean(0), mean)
      assert np.all(np.abs(x.var(0) - var) < 3 * se_var), (t, x.var(0), var)


# ---- conversions ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_conversions(kind, vp, ve):
  proc = vp if kind == "vp" else ve
  T = proc.num_timesteps
  rng = np.random.default_rng(3)
  t = np.array([0, T // 3, T - 1], np.int32)
  x0 = rng.uniform(-1, 1, size=(3, 2, 2, 1))
  eps = rng.normal(size=x0.shape)
  a, s = np_marginal(kind, t)
  a, s = a[:, None, None, None], s[:, None, None, None]
  x_t_ref = a * x0 + s * eps
  x_t = proc.q_sample(jnp.asarray(x0, jnp.float32), jnp.asarray(t), jnp.asarray(eps, jnp.float32))
  np.testing.assert_allclose(x_t, x_t_ref, rtol=1e-5, atol=1e-6)
  x_t32 = jnp.asarray(x_t_ref, jnp.float32)
  np.testing.assert_allclose(proc.predict_x0(x_t32, jnp.asarray(t), jnp.asarray(eps, jnp.float32)),
                             x0, rtol=2e-3, atol=2e-3)   # 1/√ᾱ_T ≈ 157 amplifies float32 error
  np.testing.assert_allclose(proc.predict_eps(x_t32, jnp.asarray(t), jnp.asarray(x0, jnp.float32)),
                             eps, rtol=1e-3, atol=2e-3)
  # Score of q(x_t | x0) = N(a x0, s²): −(x_t − a x0)/s² = −ε/s.
  score = proc.eps_to_score(jnp.asarray(eps, jnp.float32), jnp.asarray(t))
  np.testing.assert_allclose(score, -(x_t_ref - a * x0) / s ** 2, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(proc.score_to_eps(score, jnp.asarray(t)), eps, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(proc.snr(jnp.asarray(t)), (a / s)[:, 0, 0, 0] ** 2, rtol=1e-5)


# ---- reverse-step helpers ------------------------------------------------------------------


def test_p_log_variance_vp(vp):
  t = jnp.array([0, 1, 500, 999])
  post = np.asarray(vp.posterior_log_variance_clipped)[[0, 1, 500, 999]]
  np.testing.assert_allclose(vp.p_log_variance(t, "fixedsmall"), post, rtol=1e-7)
  assert vp.p_log_variance(t, "fixedsmall", ndim=4).shape == (4, 1, 1, 1)
  v = jnp.broadcast_to(jnp.array([1.0, -1.0, 0.0, 0.5])[:, None, None], (4, 2, 2))
  lv = vp.p_log_variance(t, "learned_range", v)
  assert lv.shape == (4, 2, 2)
  logb = np.log(LINEAR[[0, 1, 500, 999]])
  frac = np.array([1.0, 0.0, 0.5, 0.75])
  np.testing.assert_allclose(lv[:, 0, 0], frac * logb + (1 - frac) * post, rtol=1e-6)
  with pytest.raises(ConfigError, match="diffusion.var_type"):
    vp.p_log_variance(t, "learned")


def test_p_log_variance_ve(ve):
  s2 = NCSN_SIGMAS ** 2
  t = jnp.arange(10)
  step = np.log(s2 - np.append(0, s2[:-1]))
  post_1 = np.log(s2[0] * (s2[1] - s2[0]) / s2[1])
  np.testing.assert_allclose(ve.p_log_variance(t, "fixedlarge"),
                             np.append(post_1, step[1:]), rtol=1e-6)
  np.testing.assert_allclose(ve.p_log_variance(t, "learned_range", jnp.ones((10, 1))),
                             step[:, None], rtol=1e-6)


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_p_mean_variance_with_true_eps_is_posterior(kind, vp, ve):
  proc = vp if kind == "vp" else ve
  rng = np.random.default_rng(4)
  t = jnp.array([1, proc.num_timesteps // 2])
  x0 = jnp.asarray(rng.uniform(-0.9, 0.9, size=(2, 3, 3, 1)), jnp.float32)
  eps = jnp.asarray(rng.normal(size=x0.shape), jnp.float32)
  x_t = proc.q_sample(x0, t, eps)
  mean, log_var, x0_pred = proc.p_mean_variance(x_t, t, eps, "fixedsmall")
  true_mean, _, true_log_var = proc.q_posterior(x0, x_t, t)
  np.testing.assert_allclose(x0_pred, x0, atol=1e-4)
  np.testing.assert_allclose(mean, true_mean, atol=1e-4)
  np.testing.assert_allclose(log_var, true_log_var, rtol=1e-6)
  _, _, clipped = proc.p_mean_variance(x_t, t, eps + 5.0, "fixedlarge", clip_range=(-1.0, 1.0))
  assert float(jnp.max(jnp.abs(clipped))) <= 1.0


# ---- jit(vmap(f)) equals a Python loop ------------------------------------------------------


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_jit_vmap_matches_loop(kind, vp, ve):
  proc = vp if kind == "vp" else ve
  B = 4
  keys = jax.random.split(jax.random.PRNGKey(5), 3)
  x0 = jax.random.uniform(keys[0], (B, 3, 3, 2), minval=-1, maxval=1)
  noise = jax.random.normal(keys[1], x0.shape)
  t = jax.random.randint(keys[2], (B,), 0, proc.num_timesteps)
  x_t = proc.q_sample(x0, t, noise)

  # Per-example functions (t a scalar inside vmap), vmapped then jitted.
  fns = {
      "q_sample": lambda p, a, b, ti: p.q_sample(a, ti, b),
      "q_posterior": lambda p, a, b, ti: p.q_posterior(a, b, ti),
      "predict_x0": lambda p, a, b, ti: p.predict_x0(b, ti, a),
  }
  args = {"q_sample": (x0, noise), "q_posterior": (x0, x_t), "predict_x0": (noise, x_t)}
  for name, f in fns.items():
    a, b = args[name]
    batched = jax.jit(jax.vmap(f, in_axes=(None, 0, 0, 0)))(proc, a, b, t)
    for i in range(B):  # loop: the method on a batch of one, eagerly
      single = f(proc, a[i:i + 1], b[i:i + 1], t[i:i + 1])
      for got, want in zip(jax.tree_util.tree_leaves(batched), jax.tree_util.tree_leaves(single)):
        # Equal up to float32 rounding (XLA fuses differently under jit; 1/√ᾱ_t ≈ 157
        # at t = T−1 amplifies the rounding of x_t − √(1−ᾱ_t) ε).
        np.testing.assert_allclose(got[i], want[0], rtol=1e-5, atol=1e-5)


def test_respacing_is_float64_accurate():
  p = diffusion.make_process({"variant": "ddpm"})
  kept = samplers.space_timesteps(1000, "21")
  betas64 = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
  ac = np.cumprod(1 - betas64)[kept]
  want = 1 - ac / np.append(1.0, ac[:-1])
  got = np.asarray(p.respace(kept).betas, np.float64)
  assert np.max(np.abs(got / want - 1)) < 2e-6     # float32 storage of β; was 6.5e-4


def test_ve_ancestral_variances_are_score_sde_predictors():
  """fixedlarge = score_sde's reverse-diffusion step variance σ_i² − σ_{i−1}²; fixedsmall
  = its ancestral-sampling predictor's σ_{i−1}²(σ_i² − σ_{i−1}²)/σ_i²; the mean of both is
  x + (σ_i² − σ_{i−1}²)·score."""
  ve = diffusion.make_process({"variant": "ncsn", "num_timesteps": 10})
  s = np.geomspace(0.01, 1.0, 10)
  t = jnp.arange(1, 10)
  np.testing.assert_allclose(np.exp(np.asarray(ve.p_log_variance(t, "fixedlarge"))),
                             s[1:] ** 2 - s[:-1] ** 2, rtol=1e-5)
  np.testing.assert_allclose(np.exp(np.asarray(ve.p_log_variance(t, "fixedsmall"))),
                             s[:-1] ** 2 * (s[1:] ** 2 - s[:-1] ** 2) / s[1:] ** 2, rtol=1e-5)
  x = jnp.asarray(np.random.default_rng(3).normal(size=(9, 4)), jnp.float32)
  eps = jnp.asarray(np.random.default_rng(4).normal(size=(9, 4)), jnp.float32)
  mean, _, _ = ve.p_mean_variance(x, t, eps, "fixedlarge")
  score = -eps / s[1:, None]
  np.testing.assert_allclose(mean, x + (s[1:, None] ** 2 - s[:-1, None] ** 2) * score,
                             rtol=1e-4, atol=1e-5)

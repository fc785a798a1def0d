"""Losses: KL, discretized decoder (docs/checkable_values.md item 10), VLB terms, NCSN DSM identity,
hybrid loss (docs/checkable_values.md item 21) with its stop-gradient checked by finite differences."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffusion
from scipy import integrate, special

from configs.base import get_config
from diffusion.core import losses
from diffusion.core import schedules
from diffusion.errors import ConfigError

LN2 = math.log(2.0)
LINEAR = schedules.get_beta_schedule("linear", 1000)




def cfg(**kw):
  base = dict(loss="mse", var_type="fixedlarge", hybrid_lambda=0.001, loss_weighting="none",
              clip_x0=False)
  base.update(kw)
  return base


# ---- elementwise pieces --------------------------------------------------------------------


def test_mean_flat_and_eps_mse():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(2, 3, 4, 5)), rng.normal(size=(2, 3, 4, 5))
  np.testing.assert_allclose(losses.mean_flat(jnp.asarray(a)), a.reshape(2, -1).mean(1), rtol=1e-6)
  ref = ((a - b) ** 2).reshape(2, -1).mean(1)
  np.testing.assert_allclose(losses.eps_mse(jnp.asarray(a), jnp.asarray(b)), ref, rtol=1e-5)
  w = jnp.array([2.0, 0.5])
  np.testing.assert_allclose(losses.eps_mse(jnp.asarray(a), jnp.asarray(b), w), ref * [2, 0.5],
                             rtol=1e-5)


@pytest.mark.parametrize("m1,v1,m2,v2", [(0.3, 0.5, -0.2, 2.0), (1.0, 1e-2, 0.9, 3e-2)])
def test_normal_kl_against_quadrature(m1, v1, m2, v2):
  p = lambda x: math.exp(-(x - m1) ** 2 / (2 * v1)) / math.sqrt(2 * math.pi * v1)  # noqa: E731
  logq = lambda x: -(x - m2) ** 2 / (2 * v2) - 0.5 * math.log(2 * math.pi * v2)  # noqa: E731
  logp = lambda x: -(x - m1) ** 2 / (2 * v1) - 0.5 * math.log(2 * math.pi * v1)  # noqa: E731
  sd = math.sqrt(v1)
  ref = integrate.quad(lambda x: p(x) * (logp(x) - logq(x)), m1 - 12 * sd, m1 + 12 * sd)[0]
  got = losses.normal_kl(jnp.float32(m1), jnp.float32(math.log(v1)), jnp.float32(m2),
                         jnp.float32(math.log(v2)))
  np.testing.assert_allclose(got, ref, rtol=1e-5)


def decoder_bits(x, var):
  """Decoder NLL in bits with a perfect mean, x a [1, n] row on the 8-bit grid."""
  x = jnp.asarray(x, jnp.float32)[None]
  ll = losses.discretized_gaussian_log_likelihood(x, x, 0.5 * jnp.log(jnp.float32(var)))
  return -np.asarray(ll)[0] / LN2


def test_discretized_decoder_item10():
  beta_tilde_1 = LINEAR[1] * (1 - (1 - LINEAR[0])) / (1 - (1 - LINEAR[0]) * (1 - LINEAR[1]))
  interior, edge = 2 * 100 / 255 - 1, -1.0
  np.testing.assert_allclose(decoder_bits([interior, 1.0 - 2 / 255], beta_tilde_1), 1.30567,
                             rtol=2e-5)
  np.testing.assert_allclose(decoder_bits([edge, 1.0], beta_tilde_1), 0.50991, rtol=2e-5)
  np.testing.assert_allclose(decoder_bits([interior], 1e-4), 1.71301, rtol=2e-5)
  np.testing.assert_allclose(decoder_bits([edge], 1e-4), 0.61593, rtol=2e-5)
  # The tanh approximation is within 1e-3 of the exact Φ (§4.3: exact gives 1.3054).
  d = (1 / 255) / math.sqrt(beta_tilde_1)
  exact = -math.log2(special.ndtr(d) - special.ndtr(-d))
  np.testing.assert_allclose(decoder_bits([interior], beta_tilde_1), exact, rtol=1e-3)


def test_decoder_bins_sum_to_one():
  # The 256 bins partition the real line, so probabilities sum to 1 for any mean/scale.
  grid = jnp.asarray(2 * np.arange(256) / 255 - 1, jnp.float32)
  for mean, log_scale in ((0.13, math.log(0.05)), (-0.8, math.log(0.3))):
    ll = losses.discretized_gaussian_log_likelihood(grid, jnp.full_like(grid, mean), log_scale)
    np.testing.assert_allclose(jnp.sum(jnp.exp(ll)), 1.0, rtol=1e-5)


# ---- VLB terms (docs/checkable_values.md items 9–10 through the public path) ---------------------------------------


def test_vb_terms_bpd(vp):
  rng = np.random.default_rng(1)
  B = 3
  x_int = jnp.full((B, 2, 2, 1), 2 * 100 / 255 - 1, jnp.float32)   # interior pixels
  x_edge = jnp.full((B, 2, 2, 1), -1.0, jnp.float32)
  t0 = jnp.zeros((B,), jnp.int32)
  noise = jnp.asarray(rng.normal(size=(B, 2, 2, 1)), jnp.float32)
  for var_type in ("fixedlarge", "fixedsmall"):
    for x0, ref in ((x_int, 1.30567), (x_edge, 0.50991)):
      x_t = vp.q_sample(x0, t0, noise)
      vb = losses.vb_terms_bpd(vp, x0, x_t, t0, noise, var_type)  # perfect ε -> perfect mean
      np.testing.assert_allclose(vb, ref, rtol=1e-4)
  # t > 0, perfect ε: fixedsmall KL = 0; fixedlarge KL = ½(β̃/β − 1 − ln(β̃/β)) / ln 2.
  t = jnp.array([1, 10, 500])
  x0 = jnp.asarray(rng.uniform(-1, 1, size=(3, 2, 2, 1)), jnp.float32)
  x_t = vp.q_sample(x0, t, noise)
  np.testing.assert_allclose(losses.vb_terms_bpd(vp, x0, x_t, t, noise, "fixedsmall"), 0, atol=1e-6)
  ab = np.cumprod(1 - LINEAR)
  tt = np.array([1, 10, 500])
  r = LINEAR[tt] * (1 - ab[tt - 1]) / (1 - ab[tt]) / LINEAR[tt]
  ref = 0.5 * (r - 1 - np.log(r)) / LN2
  np.testing.assert_allclose(losses.vb_terms_bpd(vp, x0, x_t, t, noise, "fixedlarge"), ref,
                             rtol=1e-3, atol=1e-6)


def test_vb_terms_needs_vp(ve):
  x = jnp.zeros((1, 2))
  with pytest.raises(ValueError, match="VP"):
    losses.vb_terms_bpd(ve, x, x, jnp.array([1]), x, "fixedlarge")


# ---- NCSN: DSM with λ(σ) = σ² is ε-MSE on the VE process --------------------------------


def test_ncsn_dsm_identity(ve):
  """Song & Ermon 2019 eq. 6 with λ(σ) = σ², written out in float64 numpy."""
  rng = np.random.default_rng(2)
  B, shape = 5, (4, 4, 1)
  D = int(np.prod(shape))
  x = rng.uniform(0, 1, size=(B,) + shape)
  z = rng.normal(size=x.shape)
  t = np.array([0, 3, 5, 9, 9], np.int32)
  eps_hat = rng.normal(size=x.shape)               # an arbitrary model output
  sigma = schedules.geometric_sigmas(0.01, 1.0, 10)[t][:, None, None, None]
  x_tilde = x + sigma * z
  s_theta = -eps_hat / sigma                       # ε-model read as a score model
  dsm = 0.5 * ((s_theta + (x_tilde - x) / sigma ** 2) ** 2).reshape(B, -1).sum(1) * \
      sigma[:, 0, 0, 0] ** 2
  eps_fn = lambda x_t, tt: jnp.asarray(eps_hat, jnp.float32)  # noqa: E731
  out = diffusion.training_losses(ve, eps_fn, jnp.asarray(x, jnp.float32), jnp.asarray(t),
                           jnp.asarray(z, jnp.float32), get_config("ncsn").diffusion)
  np.testing.assert_allclose(D / 2 * out["loss"], dsm, rtol=1e-5)
  np.testing.assert_allclose(out["loss"], out["mse"], rtol=0)
  # and the score conversion used by samplers is the same s_θ.
  np.testing.assert_allclose(ve.eps_to_score(jnp.asarray(eps_hat, jnp.float32), jnp.asarray(t)),
                             s_theta, rtol=1e-5)


# ---- weighting, losses, errors --------------------------------------------------------


def test_loss_weights(vp):
  t = jnp.array([0, 300, 999])
  ab = np.cumprod(1 - LINEAR)[[0, 300, 999]]
  snr = ab / (1 - ab)
  np.testing.assert_allclose(losses.loss_weights(vp, t, "none"), 1.0)
  np.testing.assert_allclose(losses.loss_weights(vp, t, "snr"), snr, rtol=1e-4)
  np.testing.assert_allclose(losses.loss_weights(vp, t, "min_snr_5"), np.minimum(snr, 5) / snr,
                             rtol=1e-4)
  x0 = jnp.zeros((3, 2))
  noise = jnp.ones((3, 2))
  out = diffusion.training_losses(vp, lambda x, tt: jnp.zeros_like(x), x0, t, noise,
                           cfg(loss_weighting="snr"))
  np.testing.assert_allclose(out["loss"], snr, rtol=1e-4)   # mse = 1 per example
  np.testing.assert_allclose(out["mse"], 1.0)


@pytest.mark.parametrize("kw,field", [
    (dict(loss="l2"), "diffusion.loss"),
    (dict(loss_weighting="p2"), "diffusion.loss_weighting"),
    (dict(var_type="learned"), "diffusion.var_type"),
    (dict(loss="hybrid", var_type="fixedlarge"), "diffusion.var_type"),
])
def test_bad_loss_config(vp, kw, field):
  x = jnp.zeros((1, 2))
  with pytest.raises(ConfigError) as info:
    diffusion.training_losses(vp, lambda a, b: (a, a), x, jnp.array([1]), x, cfg(**kw))
  assert str(info.value).startswith(field) and "\n" not in str(info.value)


def test_bound_loss_on_ve_is_config_error(ve):
  x = jnp.zeros((1, 2))
  with pytest.raises(ConfigError, match="^diffusion.loss='kl'"):
    diffusion.training_losses(ve, lambda a, b: (a, a), x, jnp.array([1]), x,
                       cfg(loss="kl", var_type="learned_range"))


def test_hybrid_and_kl_scaling_item21():
  # improved-diffusion: vb (bits/dim) × T/1000 in the hybrid; kl loss = T·vb.
  proc = diffusion.make_process({"variant": "ddpm", "schedule": "cosine", "num_timesteps": 4000})
  rng = np.random.default_rng(3)
  x0 = jnp.asarray(np.round(rng.uniform(0, 255, size=(2, 2, 2, 1))) / 127.5 - 1, jnp.float32)
  noise = jnp.asarray(rng.normal(size=x0.shape), jnp.float32)
  t = jnp.array([5, 2000])
  eps_fn = lambda x, tt: (0.9 * noise, jnp.full_like(x, 0.3))  # noqa: E731
  h = diffusion.training_losses(proc, eps_fn, x0, t, noise, cfg(loss="hybrid", var_type="learned_range"))
  np.testing.assert_allclose(h["loss"] - h["mse"], 4.0 * h["vb"], rtol=1e-5)
  np.testing.assert_allclose(h["mse"], 0.01 * np.mean(np.asarray(noise) ** 2, (1, 2, 3)),
                             rtol=1e-4)
  k = diffusion.training_losses(proc, eps_fn, x0, t, noise, cfg(loss="kl", var_type="learned_range"))
  np.testing.assert_allclose(k["loss"], 4000 * k["vb"], rtol=1e-6)
  np.testing.assert_allclose(k["vb"], h["vb"], rtol=1e-6)


# ---- hybrid stop-gradient: autodiff vs finite differences in float64 ------------------------


def test_hybrid_stop_gradient_finite_differences():
  with jax.enable_x64(True):
    proc = diffusion.make_process({"variant": "ddpm", "schedule": "linear", "num_timesteps": 100})
    proc = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), proc)
    rng = np.random.default_rng(4)
    shape = (3, 2, 2, 1)
    x0 = jnp.asarray(np.round(rng.uniform(0, 255, size=shape)) / 127.5 - 1)
    noise = jnp.asarray(rng.normal(size=shape))
    t = jnp.array([0, 40, 99])
    eps0 = noise + 0.3 * jnp.asarray(rng.normal(size=shape))
    v0 = jnp.asarray(rng.uniform(-0.8, 0.8, size=shape))
    hybrid = cfg(loss="hybrid", var_type="learned_range")

    def parts(eps, v, config):
      out = diffusion.training_losses(proc, lambda x, tt: (eps, v), x0, t, noise, config)
      return jnp.sum(out["loss"]), jnp.sum(out["loss"] - out["mse"])

    total = jax.jit(lambda e, v: parts(e, v, hybrid)[0])
    vb_part = jax.jit(lambda e, v: parts(e, v, hybrid)[1])
    g_eps_vb, g_v = jax.grad(vb_part, argnums=0)(eps0, v0), jax.grad(total, argnums=1)(eps0, v0)
    g_eps_total = jax.grad(total, argnums=0)(eps0, v0)
    assert g_eps_vb.dtype == jnp.float64
    # 1. The bound sends no gradient to ε̂ ...
    np.testing.assert_array_equal(g_eps_vb, 0.0)
    # ... so ε̂ gets exactly the L_simple gradient 2(ε̂ − ε)/D per example.
    D = 4
    np.testing.assert_allclose(g_eps_total, 2 * (eps0 - noise) / D, rtol=1e-12)
    # ... although the bound's value does depend on ε̂ (finite difference ≠ 0).
    h = 1e-6
    bump = jnp.zeros(shape).at[1, 0, 0, 0].set(h)
    fd_eps = (vb_part(eps0 + bump, v0) - vb_part(eps0 - bump, v0)) / (2 * h)
    assert abs(float(fd_eps)) > 1e-5
    # 2. The variance output's gradient matches central finite differences.
    fd = np.zeros(shape)
    for idx in np.ndindex(*shape):
      e = jnp.zeros(shape).at[idx].set(h)
      fd[idx] = (total(eps0, v0 + e) - total(eps0, v0 - e)) / (2 * h)
    assert np.abs(fd).max() > 1e-4
    np.testing.assert_allclose(g_v, fd, rtol=1e-6, atol=1e-9)
    # 3. With loss "kl" (DPM) the bound does train ε̂: gradient = finite difference.
    kl = jax.jit(lambda e, v: parts(e, v, cfg(loss="kl", var_type="learned_range"))[0])
    g = jax.grad(kl)(eps0, v0)[1, 0, 0, 0]
    fd_kl = (kl(eps0 + bump, v0) - kl(eps0 - bump, v0)) / (2 * h)
    np.testing.assert_allclose(g, fd_kl, rtol=1e-6)
    assert abs(float(g)) > 1e-3


# ---- jit(vmap) over batches equals a loop ------------------------------------------------


def test_training_losses_jit_vmap(vp):
  K, B = 2, 3
  key = jax.random.split(jax.random.PRNGKey(6), 3)
  x0 = jax.random.uniform(key[0], (K, B, 2, 2, 1), minval=-1, maxval=1)
  noise = jax.random.normal(key[1], x0.shape)
  t = jax.random.randint(key[2], (K, B), 0, 1000)
  eps_fn = lambda x, tt: (0.5 * x, jnp.tanh(x))  # noqa: E731
  c = cfg(loss="hybrid", var_type="learned_range", clip_x0=True)
  f = lambda a, tt, n: diffusion.training_losses(vp, eps_fn, a, tt, n, c)  # noqa: E731
  batched = jax.jit(jax.vmap(f))(x0, t, noise)
  for k in range(K):
    single = f(x0[k], t[k], noise[k])
    for name in ("loss", "mse", "vb"):
      np.testing.assert_allclose(batched[name][k], single[name], rtol=1e-5, atol=1e-6)


def test_gaussian_decoder_for_continuous_data():
  """decoder='gaussian': the t=0 term is -log N(x0; mu_theta, sigma^2) / ln 2 per dim."""
  process = diffusion.make_process({"variant": "ddpm", "schedule": "linear", "num_timesteps": 10})
  rng = np.random.default_rng(3)
  x0 = rng.normal(size=(3, 2)).astype(np.float32) * 2.0
  eps = rng.normal(size=(3, 2)).astype(np.float32)
  t = jnp.zeros((3,), jnp.int32)
  x_t = process.q_sample(jnp.asarray(x0), t, jnp.asarray(eps))
  eps_hat = jnp.asarray(eps) + 0.1
  got = np.asarray(losses.vb_terms_bpd(process, jnp.asarray(x0), x_t, t, eps_hat,
                                           "fixedlarge", decoder="gaussian"))
  # Independent float64: x0_hat from eps_hat, posterior mean at t=0 is x0_hat (coef1 = 1),
  # variance of fixedlarge at t=0 is the posterior variance at t=1.
  betas = np.linspace(1e-4, 0.02, 10)
  abar = np.cumprod(1 - betas)
  x0_hat = (np.asarray(x_t, np.float64) - np.sqrt(1 - abar[0]) * np.asarray(eps_hat)) / np.sqrt(
      abar[0])
  var = betas[1] * (1 - abar[0]) / (1 - abar[1])
  nll = 0.5 * np.log(2 * np.pi * var) + (x0 - x0_hat) ** 2 / (2 * var)
  np.testing.assert_allclose(got, nll.mean(axis=1) / np.log(2), rtol=2e-4)

"""The σ policy: fractional levels of the process, what each kind of
network makes of them, the samplers' rows under ``round`` and ``interpolate``, and the
integer path left as it was.

References: float64 numpy (log σ linear between levels; EDM eq. 5; λ-uniform grids), the
network called directly, and the policies' agreement where the grid falls on levels."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffusion
from diffusion import models
from diffusion.core import model_fn
from diffusion.models.analytic import AnalyticMixture
from diffusion.samplers import heun, timesteps


def _process(kind):
  if kind == "vp":
    return diffusion.make_process(dict(variant="ddpm", schedule="linear", num_timesteps=1000))
  return diffusion.make_process(dict(variant="ncsn", num_timesteps=10, sigma_min=0.01,
                                     sigma_max=1.0))


def _edm_sigma(p):
  scale, std = p.host_marginal()
  return scale, std / scale


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_fractional_levels_continue_the_process_in_log_sigma(kind):
  p = _process(kind)
  scale, sig = _edm_sigma(p)
  T = len(sig)
  j = np.array([0, 3, T // 2, T - 2])
  s, n = (np.asarray(a, np.float64) for a in p.level_marginal(jnp.asarray(j, jnp.float32)))
  np.testing.assert_allclose(s, scale[j], rtol=2e-6)                # the levels themselves
  np.testing.assert_allclose(n, (scale * sig)[j], rtol=2e-6)
  u = j + 0.25
  s, n = (np.asarray(a, np.float64) for a in p.level_marginal(jnp.asarray(u, jnp.float32)))
  want = np.exp(0.75 * np.log(sig[j]) + 0.25 * np.log(sig[j + 1]))  # log σ linear in u
  np.testing.assert_allclose(n / s, want, rtol=2e-5)
  if kind == "vp":
    np.testing.assert_allclose(s ** 2 + n ** 2, 1.0, rtol=1e-5)     # still variance preserving
  else:
    np.testing.assert_array_equal(s, 1.0)
  # The process's own readers take a float level too (ε <-> score at σ(u)).
  eps = jnp.ones((4, 2))
  np.testing.assert_allclose(np.asarray(p.eps_to_score(eps, jnp.asarray(u, jnp.float32)))[:, 0],
                             -1.0 / n, rtol=1e-6)


def test_networks_say_whether_a_fractional_level_is_theirs():
  """Sinusoidal embeddings are continuous; NCSN's RefineNet has one embedding row per level;
  NCSNv2 ignores the level."""
  assert models.UNet().continuous_levels and models.MLP().continuous_levels
  assert not models.NETWORKS["ncsn"].build(10, ngf=8).continuous_levels
  assert models.NETWORKS["ncsnv2"].build(ngf=8).continuous_levels


class _LevelTable(nn.Module):
  """A network that embeds the level by a table row (as NCSN's RefineNet does)."""
  levels: int = 10

  @nn.compact
  def __call__(self, x, cond, train=False):
    del train
    row = nn.Embed(self.levels, x.shape[-1])(jnp.round(cond).astype(jnp.int32))
    return jnp.tanh(nn.Dense(x.shape[-1])(x)) * row


def test_integer_levels_take_the_unchanged_path_and_fractional_ones_the_networks_own():
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 3))
  p = _process("vp")
  unet = models.NETWORKS["unet"].build(ch=32, ch_mult=(1, 2), num_res_blocks=1,
                                       attn_resolutions=(), dropout=0.0)
  params = unet.init(jax.random.PRNGKey(1), x, jnp.zeros((4,)))["params"]
  eps_fn = model_fn.make_eps_fn(unet, params, p)
  t = jnp.array([0, 10, 500, 999], jnp.int32)
  direct = unet.apply({"params": params}, x, t.astype(jnp.float32))
  np.testing.assert_array_equal(np.asarray(eps_fn(x, t)), np.asarray(direct))  # bit-identical
  np.testing.assert_array_equal(np.asarray(eps_fn(x, t.astype(jnp.float32))), np.asarray(direct))
  u = jnp.array([0.5, 10.25, 500.5, 998.75], jnp.float32)          # the embedding sees u
  np.testing.assert_array_equal(np.asarray(eps_fn(x, u)),
                                np.asarray(unet.apply({"params": params}, x, u)))


def test_a_level_table_network_mixes_its_two_neighbours_denoised():
  """(1 − w) x̂₀_j + w x̂₀_{j+1} of the two levels, each at its own scale: ε = ((1 − w) σ_j ε_j
  + w σ_{j+1} ε_{j+1})/σ(u) (VE: s = 1), computed here by calling the network at j, j + 1."""
  p = _process("ve")
  net = _LevelTable(10)
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 2))
  params = net.init(jax.random.PRNGKey(1), x, jnp.zeros((3,)))["params"]
  eps_fn = model_fn.make_eps_fn(net, params, p)
  u = np.array([2.0, 4.3, 8.9])
  got = np.asarray(eps_fn(x, jnp.asarray(u, jnp.float32)), np.float64)
  _, sig = _edm_sigma(p)
  j = np.floor(u).astype(int)
  w = (u - j)[:, None]
  e_j = np.asarray(eps_fn(x, jnp.asarray(j, jnp.int32)), np.float64)
  e_k = np.asarray(eps_fn(x, jnp.asarray(j + 1, jnp.int32)), np.float64)
  sig_u = np.exp((1 - w[:, 0]) * np.log(sig[j]) + w[:, 0] * np.log(sig[j + 1]))[:, None]
  want = ((1 - w) * sig[j][:, None] * e_j + w * sig[j + 1][:, None] * e_k) / sig_u
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
  np.testing.assert_allclose(got[0], e_j[0], rtol=1e-6)            # an integer u: the level


def test_heun_rows_under_interpolate_are_eq5_unrounded():
  p = _process("vp")
  scale, sig = _edm_sigma(p)
  n, rho = 12, 7.0
  c = heun.heun_coefficients(p, num_steps=n, rho=rho, s_churn=0.0, s_tmin=0.0, s_tmax=1e30,
                             s_noise=1.0, sigma_policy="interpolate")
  i = np.arange(n)
  eq5 = (sig[-1] ** (1 / rho) + i / (n - 1) * (sig[0] ** (1 / rho) - sig[-1] ** (1 / rho))) ** rho
  np.testing.assert_allclose(c["sigma"], eq5, rtol=1e-12)
  u = c["t_hat"]
  back = np.exp(np.interp(u, np.arange(len(sig)), np.log(sig)))    # the level's σ is σ_i
  np.testing.assert_allclose(back, eq5, rtol=1e-10)
  np.testing.assert_allclose(c["scale_hat"], 1 / np.sqrt(1 + eq5 ** 2), rtol=1e-12)
  rounded = heun.heun_coefficients(p, num_steps=n, rho=rho, s_churn=0.0, s_tmin=0.0,
                                   s_tmax=1e30, s_noise=1.0)
  assert rounded["t_hat"].dtype.kind == "i" and len(np.unique(rounded["t_hat"])) <= n
  np.testing.assert_array_equal(rounded["scale_hat"], scale[rounded["t_hat"]])


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_solver_grid_logsnr_is_uniform_in_lambda_between_levels(kind):
  p = _process(kind) if kind == "vp" else diffusion.make_process(
      dict(variant="ncsn", num_timesteps=1000, sigma_min=0.01, sigma_max=50.0))
  u, alpha, sigma = timesteps.solver_grid(p, 7, "logsnr", "interpolate")
  lam = np.log(alpha) - np.log(sigma)
  np.testing.assert_allclose(np.diff(lam), np.diff(lam)[0], rtol=1e-9)
  assert u[0] == p.num_timesteps - 1 and u[-1] == 0 and np.all(np.diff(u) < 0)
  levels, a_r, s_r = timesteps.solver_grid(p, 7, "logsnr", "round")
  scale, std = p.host_marginal()
  assert levels.dtype.kind == "i" and np.all(np.diff(levels) < 0)
  np.testing.assert_array_equal(a_r, scale[levels])
  np.testing.assert_array_equal(s_r, std[levels])


@pytest.mark.parametrize("method", ["dpm_solver", "unipc", "deis"])
def test_the_two_policies_agree_where_the_grid_is_on_levels(method):
  """linspace(999, 0, 10) = 999, 888, ..., 0 are levels: rounding changes nothing, and the
  fractional path (float levels, the continued process) gives the same samples."""
  p = _process("vp")
  mix = AnalyticMixture.diagonal((0.7, 0.3), np.array([[1.0, 0.5], [-1.0, -0.5]]),
                                 np.array([[0.3, 0.4], [0.5, 0.2]]))
  eps = lambda x, t: mix.apply({}, x, p.signal_scale(t), p.noise_std(t))   # noqa: E731
  skip = "deis_skip" if method == "deis" else "dpm_skip"
  x_T = jax.random.normal(jax.random.PRNGKey(0), (256, 2))
  out = [np.asarray(diffusion.sample(eps, p, (256, 2), jax.random.PRNGKey(1),
                                     {"method": method, "num_steps": 9, skip: "time_uniform",
                                      "sigma_policy": pol}, init=x_T, x0_range=None))
         for pol in ("round", "interpolate")]
  np.testing.assert_allclose(out[1], out[0], rtol=1e-4, atol=1e-4)


def test_the_ode_between_levels_mixes_the_denoised_so_a_coarse_ladder_keeps_its_modes():
  """Cosine T = 100: σ_98 ≈ 64 and σ_99 ≈ 2029. Mixing the two levels' ε̂ (the earlier ODE) sent every sample of 0.8 N((5, 5), I) + 0.2 N((−5, −5), I) to one mode; mixing
  their denoised x̂₀ keeps the 0.8 share within 4.5 Monte-Carlo standard errors (+ 0.01 for
  the interpolation, measured 0.790 on 16,384 samples where the exact continuation gives
  0.795 from the same x_T)."""
  from diffusion.samplers import ode  # pylint: disable=import-outside-toplevel
  p = diffusion.make_process(dict(variant="ddpm", schedule="cosine", num_timesteps=100))
  mix = AnalyticMixture(weights=(0.8, 0.2), means=((5.0, 5.0), (-5.0, -5.0)),
                        covs=(((1.0, 0.0), (0.0, 1.0)),) * 2)
  eps = lambda x, t: mix.apply({}, x, p.signal_scale(t), p.noise_std(t))   # noqa: E731
  n = 4096
  x, nfe = ode.sample_with_nfe(eps, p, (n, 2), jax.random.PRNGKey(0), rtol=1e-4, atol=1e-4)
  share = float(np.mean(np.asarray(x)[:, 0] > 0))
  assert abs(share - 0.8) < 4.5 * math.sqrt(0.16 / n) + 0.01, share
  assert int(nfe) > 0

"""β schedules, σ ladders, NCSNv2 rules and Score-SDE marginals (float64 numpy).

Reference values are docs/checkable_values.md items 1–7, 17–19, 24–25, 27–28, 30;
tolerances follow the digits given there (or the tolerance it states).
"""

import math

import numpy as np
import pytest
from scipy import integrate, special
from scipy.spatial.distance import pdist

from diffusion.core import schedules
from diffusion.errors import ConfigError


def ac(betas):
  # Independent of the module: plain float64 cumulative product.
  return np.cumprod(1.0 - np.asarray(betas, np.float64))


# ---- DDPM get_beta_schedule (items 1–7) -----------------------------------------


def test_linear_item1_item2():
  b = schedules.get_beta_schedule("linear", 1000)
  assert b.dtype == np.float64 and b.shape == (1000,)
  a = ac(b)
  np.testing.assert_allclose(a[999], 4.035829765e-5, rtol=1e-6)        # item 1
  np.testing.assert_allclose(np.sqrt(a[999]), 6.352818e-3, rtol=1e-6)
  np.testing.assert_allclose(b.sum(), 10.05, rtol=1e-12)
  np.testing.assert_allclose(b[1], 1.1991992e-4, rtol=1e-7)
  np.testing.assert_allclose(b[499], 1.00400400e-2, rtol=1e-8)
  np.testing.assert_allclose(a[0], 0.9999, rtol=1e-12)                 # item 2
  np.testing.assert_allclose(a[99], 0.8970181457, rtol=1e-9)
  np.testing.assert_allclose(a[499], 0.0785872429, rtol=1e-9)


def test_quad_item3():
  b = schedules.get_beta_schedule("quad", 1000)
  np.testing.assert_allclose(ac(b)[999], 7.334124596e-4, rtol=1e-8)
  np.testing.assert_allclose(b[499], 5.722151148e-3, rtol=1e-8)
  np.testing.assert_allclose([b[0], b[999]], [1e-4, 0.02], rtol=1e-12)


@pytest.mark.parametrize("name,alpha_bar_T,beta1,warm", [
    ("warmup10", 4.6137e-9, 3.0101010e-4, 100),     # item 4
    ("warmup50", 2.6061e-7, 1.3987976e-4, 500),     # item 5
])
def test_warmup_items4_5(name, alpha_bar_T, beta1, warm):
  b = schedules.get_beta_schedule(name, 1000)
  np.testing.assert_allclose(ac(b)[999], alpha_bar_T, rtol=1e-4)
  np.testing.assert_allclose(b[1], beta1, rtol=1e-7)
  # Ramp of int(frac·T) steps ending at β_end, then constant β_end.
  assert b[warm - 1] == 0.02 and np.all(b[warm:] == 0.02) and b[warm - 2] < 0.02


def test_const_item6():
  b = schedules.get_beta_schedule("const", 1000)
  np.testing.assert_allclose(ac(b)[999], 0.98 ** 1000, rtol=1e-10)
  np.testing.assert_allclose(ac(b)[999], 1.68297e-9, rtol=1e-4)


def test_jsd_item7():
  b = schedules.get_beta_schedule("jsd", 1000)
  np.testing.assert_allclose(b[0], 1e-3, rtol=1e-12)
  assert b[999] == 1.0 and ac(b)[999] == 0.0
  # Sohl-Dickstein's binomial schedule β_t = 1/(T − t + 1), t = 1..T.
  t = np.arange(1, 1001)
  np.testing.assert_allclose(b, 1.0 / (1000 - t + 1), rtol=1e-12)


def test_sigmoid_matches_ddim_formula():
  b = schedules.get_beta_schedule("sigmoid", 1000)
  ref = special.expit(np.linspace(-6, 6, 1000)) * (0.02 - 1e-4) + 1e-4
  np.testing.assert_allclose(b, ref, rtol=1e-12)
  assert np.all(np.diff(b) > 0)


# ---- Improved DDPM (items 17–19) --------------------------------------------------------


def test_cosine_T1000_item17():
  b = schedules.get_beta_schedule("cosine", 1000)
  a = ac(b)
  np.testing.assert_allclose(b[0], 4.1284225e-5, rtol=1e-7)
  assert b[999] == 0.999 and np.sum(b == 0.999) == 1
  np.testing.assert_allclose(a[999], 2.4287669e-9, rtol=1e-6)
  np.testing.assert_allclose(a[499], 0.49384359, rtol=1e-7)
  np.testing.assert_allclose(schedules.cosine_alpha_bar(0.0), 0.99984459, rtol=1e-8)
  # Unclipped steps follow ᾱ_i = f((i+1)/T)/f(0) (paper eq. 17), computed here directly.
  f = lambda u: np.cos((u + 0.008) / 1.008 * np.pi / 2) ** 2  # noqa: E731
  np.testing.assert_allclose(a[:999], f(np.arange(1, 1000) / 1000) / f(0.0), rtol=1e-10)


def test_cosine_T4000_item18():
  b = schedules.get_beta_schedule("cosine", 4000)
  np.testing.assert_allclose(b[0], 9.8658188e-6, rtol=1e-7)
  np.testing.assert_allclose(ac(b)[3999], 1.5179805e-10, rtol=1e-6)
  assert np.sum(b == 0.999) == 1


def test_scaled_linear_item19():
  b = schedules.get_beta_schedule("scaled_linear", 4000)
  np.testing.assert_allclose([b.min(), b.max()], [2.5e-5, 5e-3], rtol=1e-12)
  np.testing.assert_allclose(ac(b)[3999], 4.2466523e-5, rtol=1e-6)
  # At T = 1000 it is DDPM's linear schedule.
  np.testing.assert_array_equal(schedules.get_beta_schedule("scaled_linear", 1000),
                                schedules.get_beta_schedule("linear", 1000))


# ---- DPM code schedule (item 30) -----------------------------------------------------------


def test_dpm_item30():
  b = schedules.get_beta_schedule("dpm", 1000)
  np.testing.assert_allclose(b[0], 0.001999989, rtol=1e-6)
  np.testing.assert_allclose(b[1], 0.001001989, rtol=1e-6)
  np.testing.assert_allclose(b[999], 0.4999955, rtol=1e-6)
  np.testing.assert_allclose(ac(b)[999], 9.916e-4, rtol=1e-3)


# ---- Score SDE (items 24–25) ---------------------------------------------------------------


def test_vp_sde_item24():
  np.testing.assert_array_equal(schedules.vp_sde_discrete_betas(0.1, 20.0, 1000),
                                schedules.get_beta_schedule("linear", 1000))
  m1, _ = schedules.vp_sde_marginal(1.0)
  np.testing.assert_allclose(m1, 6.5715865e-3, rtol=1e-7)
  np.testing.assert_allclose(m1 ** 2, 4.3185749e-5, rtol=1e-7)
  np.testing.assert_allclose(schedules.vp_sde_marginal(1e-3)[1], 0.0104854, rtol=1e-5)
  # Independent: m(t) = exp(−½∫₀ᵗ β(s) ds) by quadrature; std² = 1 − m².
  for t in (0.3, 0.8):
    integral = integrate.quad(lambda s: 0.1 + s * (20.0 - 0.1), 0.0, t)[0]
    m, std = schedules.vp_sde_marginal(t)
    np.testing.assert_allclose(m, math.exp(-0.5 * integral), rtol=1e-12)
    np.testing.assert_allclose(std ** 2 + m ** 2, 1.0, rtol=1e-12)


def test_ve_sde_item25():
  s = schedules.geometric_sigmas(0.01, 50.0, 1000)  # = score_sde discrete_sigmas
  np.testing.assert_allclose(s[[0, 1, 999]], [0.01, 0.01008562, 50.0], rtol=1e-6)
  np.testing.assert_allclose(schedules.ve_sde_sigma(0.5), 0.70710678, rtol=1e-8)
  np.testing.assert_allclose(schedules.ve_sde_diffusion(1.0), 206.36367, rtol=1e-7)
  np.testing.assert_allclose(schedules.ve_sde_diffusion(0.0), 0.041273, rtol=1e-4)
  # Independent: g(t)² = dσ²/dt (central finite difference).
  h, t = 1e-5, 0.37
  dsig2 = (schedules.ve_sde_sigma(t + h) ** 2 - schedules.ve_sde_sigma(t - h) ** 2) / (2 * h)
  np.testing.assert_allclose(schedules.ve_sde_diffusion(t) ** 2, dsig2, rtol=1e-8)


# ---- NCSN (item 27) and NCSNv2 (item 28) -------------------------------------------------


def test_ncsn_sigmas_item27():
  s = schedules.geometric_sigmas(0.01, 1.0, 10)
  np.testing.assert_allclose(
      s[::-1], [1, 0.59948, 0.35938, 0.21544, 0.12915, 0.077426, 0.046416, 0.027826,
                0.016681, 0.01], atol=5e-6)
  np.testing.assert_allclose(s[::-1], np.geomspace(1.0, 0.01, 10), rtol=1e-12)
  np.testing.assert_allclose(s[1:] / s[:-1], 1.6681005, rtol=1e-7)
  steps = schedules.ald_step_sizes(s, 2e-5)
  np.testing.assert_allclose([steps[-1], steps[0]], [0.2, 2e-5], rtol=1e-10)
  assert len(s) * 100 == 1000  # 100 Langevin steps per level


# (sigma_max, L, T, D, step_lr, gamma, C, eq4 at step_lr or None, optimal eps)
NCSNV2 = {
    "cifar10": (50, 232, 5, 3072, 6.2e-6, 1.0375591, 0.56697, 1.05547, 6.18e-6),
    "celeba": (90, 500, 5, 12288, 3.3e-6, 1.0184139, 0.56692, None, 3.34e-6),
    "bedroom": (190, 1086, 3, 49152, 1.8e-6, 1.0091217, 0.56647, None, 1.77e-6),
    "ffhq": (348, 2311, 3, 196608, 9e-7, 1.0045373, 0.56688, None, 8.93e-7),
}


@pytest.mark.parametrize("name", sorted(NCSNV2))
def test_ncsnv2_rules_item28(name):
  smax, L, T, D, lr, gamma, C, eq4, eps_star = NCSNV2[name]
  s = schedules.geometric_sigmas(0.01, smax, L)
  g = s[1] / s[0]
  np.testing.assert_allclose(g, gamma, rtol=1e-7)
  np.testing.assert_allclose(g, (smax / 0.01) ** (1 / (L - 1)), rtol=1e-12)
  np.testing.assert_allclose(schedules.ncsnv2_overlap(g, D), C, atol=6e-6)
  if eq4 is not None:
    np.testing.assert_allclose(schedules.ncsnv2_eq4_ratio(lr, 0.01, g, T), eq4, rtol=1e-5)
  np.testing.assert_allclose(schedules.ncsnv2_step_lr(0.01, g, T), eps_star, rtol=2e-3)
  assert L * T == {"cifar10": 1160, "celeba": 2500, "bedroom": 3258, "ffhq": 6933}[name]
  # Technique 2 run forward: the overlap the config realises (rounded down to
  # the 5 digits given) gives back its L.
  assert schedules.ncsnv2_num_levels(0.01, smax, schedules.ncsnv2_gamma(D, C - 5e-6)) == L


def test_ncsnv2_overlap_rule_at_half():
  # §3.2 finding: solving C = 0.5 for CIFAR-10 gives γ = 1.039796 and L ≈ 220.
  g = schedules.ncsnv2_gamma(3072, 0.5)
  np.testing.assert_allclose(g, 1.039796, rtol=1e-6)
  np.testing.assert_allclose(schedules.ncsnv2_overlap(g, 3072), 0.5, atol=1e-9)
  assert schedules.ncsnv2_num_levels(0.01, 50.0, g) == 220
  # Overlap formula against scipy's Φ.
  a = math.sqrt(2 * 3072) * (g - 1)
  np.testing.assert_allclose(schedules.ncsnv2_overlap(g, 3072),
                             special.ndtr(a + 3 * g) - special.ndtr(a - 3 * g), rtol=1e-12)


def test_ncsnv2_mnist_section8():
  # §8: σ₁ = 16.8758, D = 784, C ≈ 0.567 -> L = 101, γ = 1.07714.
  L = schedules.ncsnv2_num_levels(0.01, 16.8758, schedules.ncsnv2_gamma(784, 0.567))
  assert L == 101
  s = schedules.geometric_sigmas(0.01, 16.8758, L)
  np.testing.assert_allclose(s[1] / s[0], 1.07714, rtol=1e-5)


def test_technique1_and_sigmas_for_data():
  rng = np.random.default_rng(0)
  x = rng.uniform(0, 1, size=(37, 4, 4, 1))
  ref = pdist(x.reshape(37, -1)).max()
  np.testing.assert_allclose(schedules.max_pairwise_distance(x, chunk=5), ref, rtol=1e-10)
  # Norms spread over two decades: the norm-ordered pruning skips most rows, exactly.
  y = rng.normal(size=(400, 16)) * np.geomspace(0.01, 1.0, 400)[:, None]
  np.testing.assert_allclose(schedules.max_pairwise_distance(y, chunk=7), pdist(y).max(),
                             rtol=1e-12)
  s = schedules.ncsnv2_sigmas_for_data(x, sigma_min=0.01, overlap=0.5)
  np.testing.assert_allclose([s[0], s[-1]], [0.01, ref], rtol=1e-10)
  gamma = schedules.ncsnv2_gamma(16, 0.5)
  ratio = s[1] / s[0]
  assert ratio <= gamma < (ref / 0.01) ** (1 / (len(s) - 2))  # L is the smallest that fits
  assert schedules.ncsnv2_overlap(ratio, 16) >= 0.5


# ---- Validation -----------------------------------------------------------------------


@pytest.mark.parametrize("call,field", [
    (lambda: schedules.get_beta_schedule("foo", 10), "diffusion.schedule"),
    (lambda: schedules.get_beta_schedule("linear", 0), "diffusion.num_timesteps"),
    (lambda: schedules.get_beta_schedule("linear", -3), "diffusion.num_timesteps"),
    (lambda: schedules.get_beta_schedule("linear", 10.0), "diffusion.num_timesteps"),
    (lambda: schedules.get_beta_schedule("linear", 10, beta_start=0.0), "diffusion.beta_start"),
    (lambda: schedules.get_beta_schedule("linear", 10, beta_end=1.0), "diffusion.beta_end"),
    (lambda: schedules.get_beta_schedule("quad", 10, beta_end=-0.1), "diffusion.beta_end"),
    (lambda: schedules.get_beta_schedule("cosine", 10, cosine_s=0.0), "diffusion.cosine_s"),
    (lambda: schedules.get_beta_schedule("scaled_linear", 10), "diffusion.num_timesteps"),
    (lambda: schedules.geometric_sigmas(1.0, 1.0, 10), "diffusion.sigma_min"),
    (lambda: schedules.geometric_sigmas(2.0, 1.0, 10), "diffusion.sigma_min"),
    (lambda: schedules.geometric_sigmas(-0.1, 1.0, 10), "diffusion.sigma_min"),
    (lambda: schedules.geometric_sigmas(0.01, 1.0, 1), "diffusion.num_timesteps"),
])
def test_bad_values_raise_one_line_config_error(call, field):
  with pytest.raises(ConfigError) as info:
    call()
  msg = str(info.value)
  assert msg.startswith(field) and "\n" not in msg


def test_unknown_schedule_lists_choices():
  with pytest.raises(ConfigError, match="choose one of 'linear', 'quad'.*'dpm'"):
    schedules.get_beta_schedule("cosin", 1000)


@pytest.mark.parametrize("name", schedules.BETA_SCHEDULES)
def test_every_schedule_is_valid_float64(name):
  b = schedules.get_beta_schedule(name, 1000)
  assert b.dtype == np.float64 and b.shape == (1000,)
  assert np.all((b > 0) & (b <= 1))

"""pc, ode, heun, dpm_solver and ode_bpd against independent references (issue 22).

References, none of which goes through diffusion/samplers:
  * the analytic Gaussian mixture (exact ε, ``models.analytic``): samples at each
    sampler's recommended step count must match the mixture's weights, means,
    stds and (zero) correlations. Tolerance = 4.5 Monte-Carlo standard errors
    (SE(w) = √(w(1−w)/N), SE(mean) = sd/√n, SE(sd) ≈ sd/√(2n), SE(r) ≈ 1/√n)
    plus a stated discretisation allowance ``bias`` per sampler (absolute, in
    data units; the bias each solver has at that step count on this 2-D mixture,
    measured 2026-12-03: ode, pc ≤ 0.015; heun 18 ≤ 0.06 (VP) / 0.03 (VE),
    stochastic ≤ 0.10; dpm_solver 20 ≤ 0.04).
  * single Gaussian data: every marginal is Gaussian, so the probability-flow ODE
    is linear, x̂_T − μ = U diag(r) Uᵀ (x̂_0 − μ), r_i = √((λ_i + σ_T²)/(λ_i + σ_0²)),
    and its log-likelihood and the true log-density are closed forms.
  * float64 numpy re-derivations of the papers' step coefficients and of EDM
    Algorithm 1 and DPM-Solver++(2M) (Algorithm 2) on a fixed nonlinear ε-function.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffusion
from diffusion import options
from diffusion import samplers
from diffusion.config import SamplingConfig
from diffusion.errors import ConfigError
from diffusion.models.analytic import AnalyticMixture
from diffusion.samplers import dpm_solver, heun, ode, pc

W = np.array([0.7, 0.3])
MU = np.array([[2.0, 0.5], [-2.0, -1.0]])
SD = np.array([[0.3, 0.4], [0.5, 0.2]])
MIX = AnalyticMixture.diagonal(tuple(W), MU, SD)
N = 4096
TOL_SE = 4.5


@pytest.fixture(scope="module")
def processes():
  return dict(
      vp=diffusion.make_process(dict(variant="ddpm", schedule="linear", num_timesteps=1000)),
      ve=diffusion.make_process(dict(variant="ncsn", schedule="geometric", num_timesteps=1000,
                                     sigma_min=0.01, sigma_max=50.0)))


def exact_eps(process, mix=MIX):
  def eps_fn(x, t):
    return mix.apply({}, x, process.signal_scale(t), process.noise_std(t))
  return eps_fn


def sampler_options(method, **kw):
  """The keyword options of sampler ``method``: the config's defaults with ``kw``."""
  typed = SamplingConfig.parse(dict(kw, method=method))
  return {k: getattr(typed, k) for k in samplers.SAMPLERS[method].OPTIONS}


# ---- samples against the mixture ------------------------------------------------

CASES = [  # method, settings at the recommended step count, discretisation allowance
    ("pc", dict(), 0.02),
    ("pc", dict(predictor="euler_maruyama"), 0.02),
    ("ode", dict(), 0.02),
    ("heun", dict(num_steps=18), 0.07),
    ("heun", dict(num_steps=18, s_churn=10.0), 0.12),
    ("dpm_solver", dict(num_steps=20), 0.05),
]


@pytest.mark.parametrize("kind", ["vp", "ve"])
@pytest.mark.parametrize("method,kw,bias", CASES)
def test_samples_match_mixture(processes, kind, method, kw, bias):
  p = processes[kind]
  x = np.asarray(diffusion.sample(exact_eps(p), p, (N, 2), jax.random.PRNGKey(3),
                                  dict(method=method, **kw), x0_range=None), np.float64)
  assert np.all(np.isfinite(x))
  first = x[:, 0] > 0            # components 4 apart in x₀ (≥ 8 sd): no misassignment
  assert abs(first.mean() - W[0]) < TOL_SE * math.sqrt(W[0] * W[1] / N)
  for k, sel in enumerate([first, ~first]):
    xs, n = x[sel], sel.sum()
    assert np.all(np.abs(xs.mean(0) - MU[k]) < TOL_SE * SD[k] / math.sqrt(n) + bias), \
        (k, xs.mean(0))
    assert np.all(np.abs(xs.std(0) - SD[k]) < TOL_SE * SD[k] / math.sqrt(2 * n) + bias), \
        (k, xs.std(0))
    r = np.corrcoef(xs.T)[0, 1]
    assert abs(r) < TOL_SE / math.sqrt(n) + bias, (k, r)


# ---- the ODE: closed-form likelihood, invertibility, NFE ------------------------


def _gaussian_ode_reference(process, x, mu, cov):
  """(ODE log-likelihood, true log-density) in nats for x [B, D] at level 0, float64."""
  scale, std = process.host_marginal()
  s0, sT = scale[0], scale[-1]
  sig0, sigT = std[0] / s0, std[-1] / sT
  lam, u = np.linalg.eigh(cov)
  d = len(mu)
  xh = np.asarray(x, np.float64) / s0
  r = np.sqrt((lam + sigT ** 2) / (lam + sig0 ** 2))
  xT = mu + ((xh - mu) @ u) * r @ u.T
  prior_var = 1.0 / sT ** 2 if process.kind == "vp" else std[-1] ** 2
  log_prior = -0.5 * (np.sum(xT ** 2, 1) / prior_var + d * np.log(2 * np.pi * prior_var))
  ode_ll = log_prior + np.sum(np.log(r)) - d * np.log(s0)
  c0 = cov + sig0 ** 2 * np.eye(d)
  diff = xh - mu
  true_ll = (-0.5 * np.einsum("bi,ij,bj->b", diff, np.linalg.inv(c0), diff)
             - 0.5 * np.linalg.slogdet(2 * np.pi * c0)[1] - d * np.log(s0))
  return ode_ll, true_ll


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_ode_log_likelihood_single_gaussian(processes, kind):
  """Diagonal Gaussian: the Jacobian is diagonal, so a Rademacher probe gives the exact
  trace; the only errors are the ODE tolerance (1e-5) and the ε interpolation between
  levels, bounded here by 2e-3 nats over D = 3."""
  p = processes[kind]
  mu, s = np.array([0.3, -0.5, 1.0]), np.array([0.5, 0.8, 0.3])
  x = np.random.default_rng(0).normal(mu, s, (16, 3)) * p.host_marginal()[0][0]
  ll, nfe = ode.log_likelihood(exact_eps(p, AnalyticMixture.gaussian(mu, s)), p, x,
                               jax.random.PRNGKey(0), "rademacher")
  ode_ll, true_ll = _gaussian_ode_reference(p, x, mu, np.diag(s ** 2))
  assert np.max(np.abs(np.asarray(ll) - ode_ll)) < 2e-3
  # What separates the ODE's value from the true density is only the prior mismatch,
  # log N(x̂_T; 0, prior) − log p_T(x̂_T) with p_T = N(μ, diag(s²) + σ_T²), O(μ/σ_T) per dim:
  scale, std = p.host_marginal()
  sig_t = std[-1] / scale[-1]
  prior_var = 1.0 / scale[-1] ** 2 if kind == "vp" else std[-1] ** 2
  r = np.sqrt((s ** 2 + sig_t ** 2) / (s ** 2 + (std[0] / scale[0]) ** 2))
  x_t = mu + (x / scale[0] - mu) * r
  var_t = s ** 2 + sig_t ** 2
  mismatch = (-0.5 * np.sum(x_t ** 2 / prior_var + np.log(2 * np.pi * prior_var), 1)
              + 0.5 * np.sum((x_t - mu) ** 2 / var_t + np.log(2 * np.pi * var_t), 1))
  np.testing.assert_allclose(ode_ll - true_ll, mismatch, atol=1e-9)
  assert np.max(np.abs(mismatch)) < 0.1
  assert np.max(np.abs(np.asarray(ll) - true_ll - mismatch)) < 2e-3
  assert 20 < nfe < 2000


def test_ode_log_likelihood_gaussian_probes_unbiased(processes):
  """Correlated 2-D Gaussian: Gaussian probes estimate the trace without bias; the mean
  over 64 probes agrees with the closed form within 4.5 SE (plus the 2e-3 ODE error)."""
  p = processes["vp"]
  mu, cov = np.array([0.5, -0.2]), np.array([[0.5, 0.3], [0.3, 0.4]])
  mix = AnalyticMixture(weights=(1.0,), means=((0.5, -0.2),),
                        covs=(((0.5, 0.3), (0.3, 0.4)),))
  x0 = np.array([0.4, 0.1], np.float64)
  x = np.repeat(x0[None], 64, axis=0)
  ll, _ = ode.log_likelihood(exact_eps(p, mix), p, x, jax.random.PRNGKey(1), "gaussian")
  ll = np.asarray(ll, np.float64)
  ode_ll, _ = _gaussian_ode_reference(p, x[:1], mu, cov)
  assert ll.std() > 1e-3  # the probes do vary
  assert abs(ll.mean() - ode_ll[0]) < TOL_SE * ll.std(ddof=1) / 8 + 2e-3


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_ode_encode_decode_roundtrip(processes, kind):
  """x -> x_T -> x to 1e-3 at rtol = atol = 1e-7. The worst of the 64 points is an
  outlier in the valley between the modes (x = (−0.56, −0.82)), where the decoding
  flow separates the modes and amplifies the solver's error: it came back to 1.2e-3
  (VP) / 2.7e-3 (VE σ_max = 50) at 1e-5 / 1e-6; every other point to < 1e-4."""
  p = processes[kind]
  rng = np.random.default_rng(1)
  comp = rng.random(64) < W[1]
  x = (MU[comp.astype(int)] + SD[comp.astype(int)] * rng.normal(size=(64, 2))).astype(np.float32)
  s = dict(rtol=1e-7, atol=1e-7)
  z, nfe_up = ode.encode(exact_eps(p), p, x, **s)
  back, nfe_down = ode.decode(exact_eps(p), p, z, **s)
  assert np.max(np.abs(np.asarray(back) - x)) < 1e-3
  assert nfe_up > 0 and nfe_down > 0
  prior_std = 1.0 if kind == "vp" else 50.0          # z is at the top level, not x again
  assert abs(np.std(np.asarray(z)) / prior_std - 1) < 0.3


def test_ode_reports_true_nfe(processes):
  p = processes["vp"]
  calls = []
  base = exact_eps(p)

  def counting(x, t):
    jax.debug.callback(lambda: calls.append(1))
    return base(x, t)

  _, nfe = ode.sample_with_nfe(counting, p, (8, 2), jax.random.PRNGKey(0))
  jax.effects_barrier()
  assert nfe == len(calls)


# ---- step coefficients against float64 re-derivations of the papers ---------------


def _nearest(table, v):
  return int(np.argmin([abs(v - u) for u in table]))


@pytest.mark.parametrize("kind", ["vp", "ve"])
@pytest.mark.parametrize("churn", [0.0, 40.0])
def test_heun_coefficients_edm(processes, kind, churn):
  p = processes[kind]
  st = sampler_options("heun", num_steps=12, s_churn=churn, s_tmin=0.05, s_tmax=50.0)
  c = heun.heun_coefficients(p, **st)
  scale, std = p.host_marginal()
  sig = std / scale                                   # EDM VP: √(1/ᾱ − 1); VE: σ
  n, rho = 12, 7.0
  for i in range(n):
    raw = (sig[-1] ** (1 / rho) + i / (n - 1) * (sig[0] ** (1 / rho) - sig[-1] ** (1 / rho))) \
        ** rho                                        # EDM eq. 5
    s_i = sig[_nearest(sig, raw)]
    gamma = min(churn / n, math.sqrt(2) - 1) if 0.05 <= s_i <= 50.0 else 0.0
    j_hat = _nearest(sig, s_i * (1 + gamma))
    np.testing.assert_allclose(c["sigma"][i], s_i, rtol=1e-12)
    assert c["t_hat"][i] == j_hat
    np.testing.assert_allclose(c["scale_hat"][i], scale[j_hat], rtol=1e-12)
    np.testing.assert_allclose(c["noise"][i], math.sqrt(sig[j_hat] ** 2 - s_i ** 2), rtol=1e-9,
                               atol=1e-12)
  assert c["sigma_next"][-1] == 0 and c["second"][-1] == 0 and c["second"][:-1].all()
  plan = heun.make_plan(p, **st)                      # float32 rows of the float64 table
  np.testing.assert_allclose(np.asarray(plan.rows["sigma_hat"]), c["sigma_hat"], rtol=1e-6)


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
@pytest.mark.parametrize("predictor", ["reverse_diffusion", "euler_maruyama"])
def test_pc_rows_score_sde(processes, kind, predictor):
  p = processes[kind]
  st = dict(num_steps=50, predictor=predictor, n_corrector=2)
  r = pc.pc_rows(p, **st)
  kept = samplers.space_timesteps(1000, "50")
  scale, std = p.host_marginal()
  a2 = scale[kept] ** 2
  assert len(r["model_t"]) == 50 + 49 * 2
  for i in (49, 20, 0):                                  # predictor leaving kept[i]
    row = (49 - i) * 3
    assert r["model_t"][row] == kept[i] and r["corrector"][row] == 0
    if kind == "vp":
      beta = 1 - a2[i] / (a2[i - 1] if i > 0 else 1.0)
      c_x = 2 - math.sqrt(1 - beta) if predictor == "reverse_diffusion" else 1 + beta / 2
    else:
      beta = std[kept[i]] ** 2 - (std[kept[i - 1]] ** 2 if i > 0 else 0.0)
      c_x = 1.0
    np.testing.assert_allclose([r["c_x"][row], r["c_s"][row], r["g"][row]],
                               [c_x, beta, math.sqrt(beta) if i > 0 else 0.0], rtol=1e-12)
    if i > 0:                                            # then correctors at kept[i−1]
      b_prev = 1 - a2[i - 1] / a2[i - 2] if i > 1 else 1 - a2[0]
      for j in (1, 2):
        assert r["corrector"][row + j] == 1 and r["model_t"][row + j] == kept[i - 1]
        np.testing.assert_allclose(r["alpha"][row + j], 1 - b_prev if kind == "vp" else 1.0,
                                   rtol=1e-12)


# ---- the published algorithms on a fixed nonlinear ε ------------------------------


def _eps_np(x, t, T):
  return np.tanh(x) * (0.5 + t / T) + 0.1 * np.sin(3 * x)


def _eps_jax(T):
  def f(x, t):
    tt = t.astype(jnp.float32)[:, None] / T
    return jnp.tanh(x) * (0.5 + tt) + 0.1 * jnp.sin(3 * x)
  return f


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_heun_matches_edm_algorithm_1(processes, kind):
  p = processes[kind]
  T, n = 1000, 10
  scale, std = p.host_marginal()
  sig = std / scale
  x_T = np.random.default_rng(2).normal(size=(5, 3)) * (1.0 if kind == "vp" else 50.0)
  steps = [(sig[-1] ** (1 / 7) + i / (n - 1) * (sig[0] ** (1 / 7) - sig[-1] ** (1 / 7))) ** 7
           for i in range(n)]
  lev = [_nearest(sig, v) for v in steps]
  t_steps = [sig[j] for j in lev] + [0.0]
  x = x_T / scale[-1]                                           # x̂ = x/s
  for i in range(n):                                            # EDM Algorithm 1
    t_cur, t_next = t_steps[i], t_steps[i + 1]
    d = _eps_np(scale[lev[i]] * x, lev[i], T)                   # d_i = (x − D(x; t_i))/t_i
    x_next = x + (t_next - t_cur) * d
    if t_next != 0:
      d2 = _eps_np(scale[lev[i + 1]] * x_next, lev[i + 1], T)
      x_next = x + (t_next - t_cur) * (0.5 * d + 0.5 * d2)
    x = x_next
  got = diffusion.sample(_eps_jax(T), p, x_T.shape, jax.random.PRNGKey(0),
                         dict(method="heun", num_steps=n), init=jnp.asarray(x_T, jnp.float32),
                         x0_range=None)
  np.testing.assert_allclose(np.asarray(got), x, rtol=2e-4, atol=2e-4 * np.abs(x).max())


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


# ---- registry, config, evaluator ---------------------------------------------------


NEW = ("pc", "ode", "heun", "dpm_solver")


@pytest.mark.parametrize("method", NEW)
def test_registry_sample(processes, method):
  p = processes["vp"]
  assert method in samplers.SAMPLERS
  kw = dict(method=method)
  if method == "pc":
    kw.update(num_steps=20)
  out = diffusion.sample(exact_eps(p), p, (16, 2), jax.random.PRNGKey(0), kw, x0_range=None)
  assert out.shape == (16, 2) and np.all(np.isfinite(np.asarray(out)))


def test_the_new_samplers_are_registered_and_keep_their_rules():
  assert set(NEW) <= set(samplers.SAMPLERS)
  with pytest.raises(ConfigError, match="num_steps"):
    samplers.check(1000, method="ode", num_steps=10)
  with pytest.raises(ConfigError, match="sampling.num_steps=1 is not valid for heun"):
    samplers.check(1000, method="heun", num_steps=1)
  with pytest.raises(ConfigError, match="needs diffusion.num_timesteps >= 2"):
    samplers.check(1, method="dpm_solver")


def test_ode_functions_state_the_declared_defaults():
  """ode.py's helpers repeat the solver defaults of its entry point: they must agree."""
  declared = {k: o.default for k, o in ode.OPTIONS.items()}
  for fn in (ode.encode, ode.decode, ode.sample_with_nfe, ode.log_likelihood):
    given = options.keyword_defaults(fn)
    assert given == {k: declared[k] for k in given}, fn.__name__


def test_ode_and_dpm_solver_through_a_family_sample_fn():
  """The samplers that run their own loop draw inside the family's jitted sample_fn
  (the ODE's step count stays a traced value there)."""
  for method in ("ode", "dpm_solver"):
    family = diffusion.make_family({
        "diffusion": {"variant": "ncsn", "num_timesteps": 20, "sigma_max": 5.0},
        "data": {"dataset": "mixture", "mixture_weights": (1.0,),
                 "mixture_means": ((0.0, 0.0),), "mixture_stds": (1.0,)},
        "model": {"name": "analytic"}, "sampling": {"method": method}})
    x = family.sample_fn(256)({}, jax.random.PRNGKey(0))
    assert x.shape == (256, 2) and abs(float(jnp.std(x)) - 1.0) < 0.15, method


def test_ode_bpd_of_images_closed_form(processes):
  """bits/dim = −log p(x)/(D ln 2) + 7 at the dequantized x (centered), against the
  closed-form Gaussian log-density at the same dequantization draw."""
  from diffusion.evals.ode_bpd import ode_bpd_of_images  # pylint: disable=import-outside-toplevel
  p = processes["vp"]
  rng = np.random.default_rng(4)
  images = rng.integers(60, 200, size=(6, 2, 2, 1)).astype(np.uint8)
  mu, s = np.zeros(4), np.full(4, 0.4)
  mix = AnalyticMixture.gaussian(mu.reshape(2, 2, 1), s.reshape(2, 2, 1))

  class Cfg:
    num_probes, probe, batch_size, ode_solver, rtol, atol = 2, "rademacher", 4, "tsit5", 1e-5, 1e-5

  key = jax.random.PRNGKey(7)
  res = ode_bpd_of_images(exact_eps(p, mix), p, images, True, key, Cfg)
  per = np.zeros((6, 2))
  for pr in range(2):
    for i in range(0, 6, 4):
      k_deq, _ = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, pr), i))
      k = np.asarray(images[i:i + 4], np.float32)
      u = (k + np.asarray(jax.random.uniform(k_deq, k.shape))) / 256.0
      x = (2 * u - 1).reshape(len(k), -1)
      _, true_ll = _gaussian_ode_reference(p, x, mu, np.diag(s ** 2))
      per[i:i + len(k), pr] = -true_ll / (4 * math.log(2)) + 7.0
  np.testing.assert_allclose(res["per_image"], per.mean(1), atol=2e-3)
  assert res["bpd_se"] > 0 and res["nfe"] > 0 and res["num_examples"] == 6


def test_ode_bpd_refuses_vae_and_toy():
  from diffusion.config import DiffusionRunConfig, VAERunConfig  # pylint: disable=import-outside-toplevel
  from diffusion.evals.ode_bpd import OdeBitsPerDim  # pylint: disable=import-outside-toplevel
  check_applies = OdeBitsPerDim.check_applies
  with pytest.raises(ConfigError, match="ode_bpd.*diffusion family"):
    check_applies(VAERunConfig())
  toy = DiffusionRunConfig.parse(dict(data=dict(dataset="swiss_roll")))
  with pytest.raises(ConfigError, match="2-D points"):
    check_applies(toy)

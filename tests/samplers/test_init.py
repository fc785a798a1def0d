"""diffusion/samplers/__init__.py: the registry and the one dispatch: every sampler through
sample(), its rules and words, against the analytic Gaussian mixture.

The mixture (exact ε, ``models.analytic``): samples at each sampler's recommended step
count must match the mixture's weights, means, stds and (zero) correlations. Tolerance =
4.5 Monte-Carlo standard errors (SE(w) = √(w(1−w)/N), SE(mean) = sd/√n, SE(sd) ≈ sd/√(2n),
SE(r) ≈ 1/√n) plus a stated discretisation allowance ``bias`` per sampler (absolute, in
data units; the bias each solver has at that step count on this 2-D mixture, measured
2026-12-03: ode, pc ≤ 0.015; heun 18 ≤ 0.06 (VP) / 0.03 (VE), stochastic ≤ 0.10;
dpm_solver 20 ≤ 0.04)."""

import math

import jax
import numpy as np
import pytest

import diffusion
from diffusion import samplers
from diffusion.config import SamplingConfig
from diffusion.errors import ConfigError
from diffusion.models.analytic import AnalyticMixture

from tests.samplers.test_ancestral import D, gaussian_eps_fn

W = np.array([0.7, 0.3])
MU = np.array([[2.0, 0.5], [-2.0, -1.0]])
SD = np.array([[0.3, 0.4], [0.5, 0.2]])
MIX = AnalyticMixture.diagonal(tuple(W), MU, SD)
N = 4096
TOL_SE = 4.5


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

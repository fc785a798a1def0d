"""diffusion/samplers/__init__.py: the registry and the one dispatch: every sampler through
sample(), its rules and words, against the analytic Gaussian mixture.

The mixture (exact ε, ``models.analytic``): samples at each sampler's recommended step
count must match the mixture's weights, means, stds and (zero) correlations. Tolerance =
4.5 Monte-Carlo standard errors (SE(w) = √(w(1−w)/N), SE(mean) = sd/√n, SE(sd) ≈ sd/√(2n),
SE(r) ≈ 1/√n) plus a stated discretisation allowance ``bias`` per sampler (absolute, in
data units; the bias each solver has at that step count on this 2-D mixture, measured
2026-12-03: ode, pc ≤ 0.015; heun 18 ≤ 0.06 (VP) / 0.03 (VE), stochastic ≤ 0.10;
dpm_solver 20 ≤ 0.04)."""

import dataclasses
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


def _assert_matches_mixture(x, bias):
  """Weights, means, stds and (zero) correlations of samples ``x`` [N, 2] against the
  mixture within TOL_SE Monte-Carlo standard errors plus ``bias`` (data units)."""
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


@pytest.mark.parametrize("kind", ["vp", "ve"])
@pytest.mark.parametrize("method,kw,bias", CASES)
def test_samples_match_mixture(processes, kind, method, kw, bias):
  p = processes[kind]
  x = np.asarray(diffusion.sample(exact_eps(p), p, (N, 2), jax.random.PRNGKey(3),
                                  dict(method=method, **kw), x0_range=None), np.float64)
  _assert_matches_mixture(x, bias)


# iPNDM, UniPC, DEIS and DPM-Solver++(3M) / SDE-2M under both σ policies, at 20 network evaluations (50 for
# the SDE form): allowance 0.02 (the largest excess measured 2026-12-06 was 0.008, DEIS
# on VE).
MULTISTEP_CASES = [
    dict(method="ipndm", num_steps=20),
    dict(method="unipc", num_steps=20),
    dict(method="deis", num_steps=20),
    dict(method="dpm_solver", dpm_order=3, num_steps=20),
    dict(method="dpm_solver", dpm_sde=True, num_steps=50),
]


@pytest.mark.parametrize("kind", ["vp", "ve"])
@pytest.mark.parametrize("policy", ["round", "interpolate"])
@pytest.mark.parametrize("settings", MULTISTEP_CASES,
                         ids=lambda s: "-".join(map(str, s.values())))
def test_multistep_samples_match_mixture(processes, kind, policy, settings):
  p = processes[kind]
  x = np.asarray(diffusion.sample(exact_eps(p), p, (N, 2), jax.random.PRNGKey(3),
                                  dict(settings, sigma_policy=policy), x0_range=None),
                 np.float64)
  _assert_matches_mixture(x, 0.02)


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


# Sampler settings that cannot work are refused before sampling, in one line: every numeric
# sampling field against NaN, ±inf and a value outside its declared range, through the config and through a plain keyword call; and the
# rules between options (heun's churn range, an order the step count cannot carry, the SDE
# form's order).

FIELDS = {f.name: f for f in dataclasses.fields(SamplingConfig)}
NUMERIC = sorted(name for name, f in FIELDS.items()
                 if f.type in (int, float, "int", "float") and name != "method")
# Values tried for "out of range": the first the field's rule (or choices) refuses is used.
CANDIDATES = (-1, 0, 1, 2, 4, 1e6, -1e6, 0.5, 1.5)


def _out_of_range(field) -> object:
  meta = field.metadata
  if meta.get("choices") is not None:
    return next(v for v in CANDIDATES if v not in meta["choices"])
  rule = meta["rule"]
  return next(v for v in CANDIDATES if not rule.test(v) and
              (field.type in (float, "float") or float(v).is_integer()))


def _one_line(err, name):
  text = str(err.value)
  assert "\n" not in text and text.startswith(f"sampling.{name}="), text


def test_every_numeric_sampling_field_is_declared_with_a_range():
  """A number without choices or a rule could not be refused when out of range."""
  assert {"num_steps", "snr", "rtol", "s_noise", "dpm_order", "eta"} <= set(NUMERIC)
  for name in NUMERIC:
    meta = FIELDS[name].metadata
    assert meta.get("choices") is not None or meta.get("rule") is not None, name


@pytest.mark.parametrize("name", NUMERIC)
@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "range"])
def test_numeric_field_refuses_nan_inf_and_out_of_range_in_one_line(name, bad):
  value = _out_of_range(FIELDS[name]) if bad == "range" else float(bad)
  with pytest.raises(ConfigError) as err:                      # a config (sample.py, train.py)
    SamplingConfig.parse({name: value})
  _one_line(err, name)
  method = next(m for m in samplers.SAMPLERS if name in samplers.reads(m)) \
      if name not in ("batch_size",) else None
  if method is None:
    return
  with pytest.raises(ConfigError) as err:                      # a plain keyword call
    samplers.check(1000, method, **{name: value})
  _one_line(err, name)


def test_pc_snr_that_explodes_is_refused_and_a_valid_one_samples():
  """pc with snr = 1e6 returned values near 1e15 and exit 0 before; now refused."""
  p = diffusion.make_process(dict(variant="ncsn", num_timesteps=10))
  eps = lambda x, t: x / p.noise_std(t)[:, None]           # noqa: E731  (N(0, 0) data's ε)
  with pytest.raises(ConfigError, match=r"sampling.snr=1000000.0 is not valid; .*in \(0, 1\)"):
    samplers.sample(eps, p, (8, 2), jax.random.PRNGKey(0), method="pc", snr=1e6)
  x = samplers.sample(eps, p, (8, 2), jax.random.PRNGKey(0), method="pc", snr=0.16)
  assert np.all(np.isfinite(np.asarray(x)))


def test_heun_churn_range_must_not_be_empty():
  """s_tmin > s_tmax silently dropped the requested churn; with churn off it is harmless."""
  with pytest.raises(ConfigError, match=r"sampling.s_tmin=5.0 is not valid; .*<= "
                                        r"sampling.s_tmax=1.0"):
    samplers.check(1000, "heun", s_churn=10.0, s_tmin=5.0, s_tmax=1.0)
  samplers.check(1000, "heun", s_churn=0.0, s_tmin=5.0, s_tmax=1.0)


@pytest.mark.parametrize("method,order_field,order", [
    ("dpm_solver", "dpm_order", 3), ("unipc", "unipc_order", 3), ("deis", "deis_order", 3),
    ("ipndm", "ipndm_order", 4)])
def test_too_few_steps_for_the_order_is_refused(method, order_field, order):
  with pytest.raises(ConfigError, match=rf"sampling.num_steps={order - 1} is not valid for "
                                        rf"{method} with sampling.{order_field}={order}"):
    samplers.check(1000, method, num_steps=order - 1, **{order_field: order})
  samplers.check(1000, method, num_steps=order, **{order_field: order})
  samplers.check(1000, method, num_steps=0, **{order_field: order})   # the sampler's default


def test_order_four_for_dpm_solver_and_the_sde_form_at_order_three_are_refused():
  with pytest.raises(ConfigError, match=r"sampling.dpm_order=4 is not valid"):
    SamplingConfig.parse({"method": "dpm_solver", "dpm_order": 4})
  with pytest.raises(ConfigError, match=r"sampling.dpm_order=3 is not valid with "
                                        r"sampling.dpm_sde=True"):
    samplers.check(1000, "dpm_solver", dpm_order=3, dpm_sde=True)


def test_sigma_policy_other_than_the_two_is_refused_with_the_choices():
  with pytest.raises(ConfigError) as err:
    SamplingConfig.parse({"sigma_policy": "nearest"})
  assert "\n" not in str(err.value) and "'round'" in str(err.value) and \
      "'interpolate'" in str(err.value)


def test_more_steps_than_levels_only_between_levels():
  """On the levels a chain cannot take more steps than there are; between them it can."""
  with pytest.raises(ConfigError, match="sigma_policy='interpolate' to step between levels"):
    samplers.check(10, "heun", num_steps=18)
  samplers.check(10, "heun", num_steps=18, sigma_policy="interpolate")
  with pytest.raises(ConfigError, match=r"<= diffusion.num_timesteps=10 \(0 = every level\)\."):
    samplers.check(10, "ddim", num_steps=18)


def test_a_bool_option_must_be_a_bool():
  with pytest.raises(ConfigError, match=r"sampling.dpm_sde='yes' is not valid; it must be "
                                        r"True or False"):
    samplers.check(1000, "dpm_solver", dpm_sde="yes")


def test_the_step_count_in_log_lines_and_output_names_is_the_one_the_chain_takes():
  """num_steps = 0 is every level for the level samplers and the sampler's own default
  for the σ samplers (heun's 18, DEIS's 10); between levels it may exceed T."""
  assert samplers.effective_steps(0, 1000, "ddim") == 1000
  assert samplers.effective_steps(0, 1000, "heun") == 18
  assert samplers.effective_steps(0, 100, "deis") == 10
  assert samplers.effective_steps(50, 10, "heun") == 50
  assert samplers.describe(100, "heun", num_steps=0) == "heun, 18 steps, 35 network evaluations"

"""Sampler settings that cannot work are refused before sampling, in one line (issue 30
item 3, issue 33 "Bad input"): every numeric sampling field against NaN, ±inf and a value
outside its declared range, through the config and through a plain keyword call; and the
rules between options (heun's churn range, an order the step count cannot carry, the SDE
form's order)."""

import dataclasses

import jax
import numpy as np
import pytest

import diffusion
from diffusion import samplers
from diffusion.config import SamplingConfig
from diffusion.errors import ConfigError

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

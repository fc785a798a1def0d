"""diffusion/families/diffusion.py: what the family says about its sampling (sample.py's
names) and training, and the samplers that run their own loop inside its sample_fn."""

import jax
import jax.numpy as jnp

import diffusion
from diffusion import families
from diffusion.config import checks

from tests.train.test_loop import toy_config


def test_the_family_describes_its_sampling_and_whether_it_trains():
  """What sample.py names its folder, console line and meta.json by comes from the
  family: the chain's length (0 = every level), the sampler's named options (DDIM's η);
  a model without parameters is not trained (the loop asks ``trainable`` only)."""
  family = families.make_family(checks.validate(toy_config(**{
      "sampling.method": "ddim", "sampling.num_steps": 10, "sampling.eta": 0.5})))
  record = family.sampling_record(steps_from="--steps")
  assert (record.sampler, record.steps, record.name, record.options) == (
      "ddim", 10, "ddim_s10_eta0.5", {"eta": 0.5})
  assert record.phrase == "10 steps of 100 levels (--steps=10)"
  every = family.sampling_record(family.config.sampling.replace(method="ancestral",
                                                                num_steps=0))
  assert (every.sampler, every.steps, every.name, every.options) == (
      "ancestral", 100, "ancestral_s100", {})
  assert every.phrase == "100 steps of 100 levels (config.sampling.num_steps=0, 0 = every level)"
  assert family.trainable and family.write_extras({}, "unused", None) == []
  from configs.ncsn import toy_mixture  # pylint: disable=import-outside-toplevel
  langevin = families.make_family(checks.validate(toy_mixture.get_config()))
  assert langevin.sampling_record().phrase == (
      "10 steps of 10 levels (config.sampling.num_steps=0, 0 = every level), "
      f"{langevin.config.sampling.n_steps_each} Langevin steps each")
  analytic = families.make_family(checks.validate(toy_config(**{"model.name": "analytic"})))
  assert not analytic.trainable and analytic.init_params(jax.random.PRNGKey(0)) == {}


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

"""diffusion/core/model_fn.py: the glue between a network and a process (inputs rescaled
to 2x - 1 once, as NCSN's networks see them)."""

import jax.numpy as jnp
import numpy as np

import diffusion
from diffusion.config import parse_config


def test_ncsn_networks_see_2x_minus_1_without_dropout():
  from configs.ncsn import cifar10, digits  # pylint: disable=import-outside-toplevel
  from diffusion import make_eps_fn  # pylint: disable=import-outside-toplevel
  for get in (cifar10.get_config, digits.get_config):
    m = parse_config(get()).model
    assert m.rescale_inputs and m.dropout == 0.0
  seen = []

  class Probe:
    def apply(self, variables, x, cond, train=False, rngs=None):
      del variables, cond, train, rngs
      seen.append(np.asarray(x))
      return jnp.zeros_like(x)

  ve = diffusion.make_process({"variant": "ncsn"})
  eps_fn = make_eps_fn(Probe(), {}, ve, {"rescale_inputs": True})
  eps_fn(jnp.full((2, 3), 0.25), jnp.array([0, 1]))
  np.testing.assert_allclose(seen[0], -0.5)

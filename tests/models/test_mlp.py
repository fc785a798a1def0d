"""diffusion/models/mlp.py: the 2-D MLP's shapes and conditioning."""

import jax
import jax.numpy as jnp
import numpy as np

from diffusion import make_model
from diffusion.models import MLP

from tests.models.test_unet import _model_cfg, _perturb


def test_mlp_shapes_and_conditioning():
  module = make_model(_model_cfg(name="mlp", hidden_dims=(32, 32), out_channels=2))
  assert isinstance(module, MLP)
  x = jax.random.normal(jax.random.key(0), (5, 2))
  cond = jnp.arange(5.0)
  params = module.init(jax.random.key(1), x, cond)["params"]
  apply = jax.jit(module.apply)
  out = apply({"params": params}, x, cond)
  assert out.shape == (5, 2) and out.dtype == jnp.float32
  assert np.all(np.asarray(out) == 0.0)                  # zero-initialised output layer
  noisy = {"params": _perturb(params, jax.random.key(2), scale=0.3)}
  out_a = np.asarray(apply(noisy, x, cond))
  out_b = np.asarray(apply(noisy, x, cond + 7.0))
  assert np.abs(out_a - out_b).max() > 1e-3
  # Unconditional: no embedding parameters, cond ignored.
  uncond = make_model(_model_cfg(name="mlp", hidden_dims=(16,), out_channels=4,
                                 conditional=False))
  p = uncond.init(jax.random.key(3), x)
  assert "temb" not in jax.tree_util.keystr(p)
  assert uncond.apply(p, x).shape == (5, 4)

"""diffusion/models/layers.py: the timestep embedding (DDPM's values) and the two-pass
GroupNorm with its gradients against the closed form."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from diffusion.models import timestep_embedding


# ---- timestep embedding (docs/checkable_values.md item 11) ----------------------------------


def test_timestep_embedding_matches_ddpm_values():
  emb = np.asarray(timestep_embedding(jnp.array([1.0, 0.0]), 128))
  assert emb.shape == (2, 128)
  np.testing.assert_allclose(emb[0, 0], math.sin(1.0), rtol=1e-6)
  np.testing.assert_allclose(emb[0, 1], 0.7604387, rtol=1e-6)
  np.testing.assert_allclose(emb[0, 64], math.cos(1.0), rtol=1e-6)
  # Lowest frequency 1e-4: at cond = 1 the last sin entry is sin(1e-4).
  np.testing.assert_allclose(emb[0, 63], math.sin(1e-4), rtol=1e-5)
  np.testing.assert_array_equal(emb[1], np.r_[np.zeros(64), np.ones(64)])
  freqs = np.exp(-np.log(1e4) * np.arange(64) / 63)
  t = 537.0
  ref = np.r_[np.sin(t * freqs), np.cos(t * freqs)]
  np.testing.assert_allclose(timestep_embedding(jnp.array([t]), 128)[0], ref, atol=2e-4)


# ---- GroupNorm ------------------------------------------------------------------------------


def test_group_norm_is_two_pass():
  from diffusion.models.layers import GroupNorm  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(2)
  x = (100.0 + rng.normal(size=(2, 4, 4, 64))).astype(np.float32)   # mean/std ≈ 100
  gn = GroupNorm(num_groups=32)
  y = np.asarray(gn.apply(gn.init(jax.random.PRNGKey(0), x), x), np.float64)
  g = x.astype(np.float64).reshape(2, 4, 4, 32, 2)
  want = ((g - g.mean((1, 2, 4), keepdims=True)) /
          np.sqrt(g.var((1, 2, 4), keepdims=True) + 1e-6)).reshape(x.shape)
  assert np.max(np.abs(y - want)) < 2e-4


def test_group_norm_gradients_match_the_closed_form():
  """Forward with learned scale/bias and the input gradient against float64 numpy:
  dx = rstd (dx̂ − mean(dx̂) − x̂ mean(dx̂ x̂)) per (example, group), dx̂ = dy scale."""
  from diffusion.models.layers import GroupNorm  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(3)
  x = (3.0 * rng.normal(size=(2, 5, 3, 64)) + 1.0).astype(np.float32)
  dy = rng.normal(size=x.shape).astype(np.float32)
  scale = rng.uniform(0.5, 1.5, 64).astype(np.float32)
  bias = rng.normal(size=64).astype(np.float32)
  gn = GroupNorm(num_groups=16)
  params = {"params": {"scale": scale, "bias": bias}}
  y, vjp = jax.vjp(lambda v: gn.apply(params, v), x)
  dx = np.asarray(vjp(dy)[0], np.float64)
  g = x.astype(np.float64).reshape(2, 5, 3, 16, 4)
  axes = (1, 2, 4)
  rstd = 1.0 / np.sqrt(g.var(axes, keepdims=True) + 1e-6)
  xhat = (g - g.mean(axes, keepdims=True)) * rstd
  np.testing.assert_allclose(np.asarray(y), xhat.reshape(x.shape) * scale + bias, atol=2e-5)
  dxhat = (dy.astype(np.float64) * scale).reshape(g.shape)
  want = rstd * (dxhat - dxhat.mean(axes, keepdims=True)
                 - xhat * (dxhat * xhat).mean(axes, keepdims=True))
  np.testing.assert_allclose(dx, want.reshape(x.shape), atol=2e-5)

"""diffusion/models/unet.py: the DDPM U-Net's size, shapes and behaviour.

Parameter counts use jax.eval_shape (nothing allocated). Forward tests use a small U-Net
(ch 32, two levels, attention at 8x8, 16x16x3 inputs), compiled once per mode in a
module-scoped fixture."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.base import get_config
from diffusion import make_model
from diffusion.models import UNet


def _model_cfg(**changes):
  cfg = get_config("ddpm").model
  for k, v in changes.items():
    cfg[k] = v
  return cfg


def _num_params(module, x_shape, cond=True):
  def init():
    c = jnp.zeros(x_shape[:1]) if cond else None
    return module.init(jax.random.key(0), jnp.zeros(x_shape), c)
  shapes = jax.eval_shape(init)
  return sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(shapes))


def _perturb(params, key, scale=0.05):
  """Adds N(0, scale^2) noise to every parameter (zero init would give output 0)."""
  leaves, treedef = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree_util.tree_unflatten(
      treedef, [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


# ---- U-Net size (docs/checkable_values.md items 12-13) -------------------------------


@pytest.mark.parametrize("changes, image_size, expected", [
    (dict(), 32, 35_746_307),                                    # DDPM CIFAR-10
    (dict(out_channels=6), 32, 35_749_766),                      # learned variance
    (dict(ch_mult=(1, 1, 2, 2, 4, 4), dropout=0.0), 256, 113_673_219),  # CelebA-HQ/LSUN
])
def test_unet_parameter_count_matches_ddpm(changes, image_size, expected):
  module = make_model(_model_cfg(**changes))
  assert isinstance(module, UNet)
  assert _num_params(module, (1, image_size, image_size, 3)) == expected


def test_unconditional_unet_has_no_embedding():
  module = make_model(_model_cfg(conditional=False, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                                 attn_resolutions=(8,)))
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3))))
  names = jax.tree_util.keystr(shapes)
  assert "temb" not in names
  out = jax.eval_shape(module.apply, shapes, jnp.zeros((2, 16, 16, 3)))
  assert out.shape == (2, 16, 16, 3)


def test_unet_without_resampling_convs_and_learned_variance_shapes():
  module = make_model(_model_cfg(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1,
                                 attn_resolutions=(), resamp_with_conv=False, out_channels=6))
  x, c = jnp.zeros((2, 16, 16, 3)), jnp.zeros((2,))
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), x, c))
  assert "downsample" not in jax.tree_util.keystr(shapes)
  out = jax.eval_shape(module.apply, shapes, x, c)
  assert out.shape == (2, 16, 16, 6) and out.dtype == jnp.float32


# ---- small U-Net forward ----------------------------------------------------------------


SMALL = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), dropout=0.1)


@pytest.fixture(scope="module")
def small_unet():
  """float32 and bfloat16 small U-Nets, their init and perturbed params, inputs."""
  f32 = make_model(_model_cfg(**SMALL))
  bf16 = make_model(_model_cfg(dtype="bfloat16", **SMALL))
  assert bf16.dtype == jnp.bfloat16
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
  cond = jnp.array([3.0, 917.0])
  params = jax.jit(f32.init)(jax.random.key(0), x, cond)["params"]
  return dict(
      f32=jax.jit(f32.apply, static_argnames="train"),
      bf16=jax.jit(bf16.apply, static_argnames="train"),
      params=params, noisy=_perturb(params, jax.random.key(2)), x=x, cond=cond)


def test_unet_params_are_float32_and_zero_init_output_is_zero(small_unet):
  s = small_unet
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(s["params"]))
  assert not np.any(s["params"]["conv_out"]["kernel"])
  out = s["f32"]({"params": s["params"]}, s["x"], s["cond"])
  assert out.shape == s["x"].shape and out.dtype == jnp.float32
  assert np.all(np.asarray(out) == 0.0)


def test_unet_bfloat16_close_to_float32(small_unet):
  s = small_unet
  ref = np.asarray(s["f32"]({"params": s["noisy"]}, s["x"], s["cond"]))
  out = s["bf16"]({"params": s["noisy"]}, s["x"], s["cond"])
  assert out.dtype == jnp.float32
  assert np.linalg.norm(ref) > 0
  rel = np.linalg.norm(np.asarray(out) - ref) / np.linalg.norm(ref)
  assert rel < 2e-2, rel


def test_unet_conditioning_changes_output(small_unet):
  s = small_unet
  v = {"params": s["noisy"]}
  out_a = np.asarray(s["f32"](v, s["x"], s["cond"]))
  out_b = np.asarray(s["f32"](v, s["x"], s["cond"] + 50.0))
  assert np.abs(out_a - out_b).max() > 1e-3 * np.abs(out_a).max()
  np.testing.assert_array_equal(out_a, np.asarray(s["f32"](v, s["x"], s["cond"])))


def test_unet_dropout_only_in_training(small_unet):
  s = small_unet
  v = {"params": s["noisy"]}
  k1, k2 = jax.random.key(10), jax.random.key(11)
  eval_1 = np.asarray(s["f32"](v, s["x"], s["cond"], train=False, rngs={"dropout": k1}))
  eval_2 = np.asarray(s["f32"](v, s["x"], s["cond"], train=False, rngs={"dropout": k2}))
  np.testing.assert_array_equal(eval_1, eval_2)
  train_1 = np.asarray(s["f32"](v, s["x"], s["cond"], train=True, rngs={"dropout": k1}))
  train_1b = np.asarray(s["f32"](v, s["x"], s["cond"], train=True, rngs={"dropout": k1}))
  train_2 = np.asarray(s["f32"](v, s["x"], s["cond"], train=True, rngs={"dropout": k2}))
  np.testing.assert_array_equal(train_1, train_1b)      # same rng, same output
  assert np.abs(train_1 - train_2).max() > 1e-4
  assert np.abs(train_1 - eval_1).max() > 1e-4

"""diffusion/data/transforms.py: device preprocessing (scaling, dequantization, flips,
dynamic binarization), its inverse to uint8, and the host-side crops and resizes.

Monte Carlo checks state their standard error (SE) and allow 5 SE."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusion import data
from diffusion.config import SamplingConfig
from diffusion.data import transforms

from tests.families.test_vae import tiny_config


def all_pixel_values(batch: int = 64) -> np.ndarray:
  """uint8 [batch, 16, 16, 1]: every value 0..255 once per image."""
  return np.tile(np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1), (batch, 1, 1, 1))


_jit_pre = jax.jit(transforms.preprocess, static_argnames=(
    "centered", "uniform_dequantization", "random_flip"))


# ---- device preprocessing and its inverse ---------------------------------------------------


@pytest.mark.parametrize("centered", [True, False])
@pytest.mark.parametrize("dequant", [False, True])
def test_preprocess_range_and_bins(centered, dequant):
  x = all_pixel_values()
  v = x.astype(np.float64)
  y = np.asarray(_jit_pre(jnp.asarray(x), jax.random.key(1), centered=centered,
                          uniform_dequantization=dequant, random_flip=False), np.float64)
  assert y.dtype == np.float64 and y.shape == x.shape
  lo, hi = transforms.data_range(centered)
  assert y.min() >= lo and y.max() <= hi
  u01 = (y + 1) / 2 if centered else y          # back to [0, 1]
  if not dequant:
    np.testing.assert_allclose(u01, v / 255, atol=1e-6)
  else:
    # Every value stays inside its pixel's bin [v/256, (v+1)/256] ...
    assert np.all(u01 >= v / 256 - 1e-6) and np.all(u01 <= (v + 1) / 256 + 1e-6)
    # ... and is uniform in it: u = 256·y − v has mean 1/2, SE = sqrt(1/12 / n).
    u = u01 * 256 - v
    se = np.sqrt(1 / 12 / u.size)
    assert abs(u.mean() - 0.5) < 5 * se
    assert abs(u.var() - 1 / 12) < 0.01


def test_flip_is_mirror_and_half_the_time():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.integers(0, 256, size=(400, 4, 6, 2), dtype=np.uint8))  # W != H
  key = jax.random.key(7)
  kw = dict(centered=True, uniform_dequantization=True)
  plain = np.asarray(_jit_pre(x, key, random_flip=False, **kw))
  flipped = np.asarray(_jit_pre(x, key, random_flip=True, **kw))
  same = np.all(flipped == plain, axis=(1, 2, 3))
  mirror = np.all(flipped == plain[:, :, ::-1, :], axis=(1, 2, 3))
  assert np.all(same | mirror)             # each example: itself or its left-right mirror
  frac = mirror.mean()                     # P(flip) = 1/2, SE = 0.5/sqrt(400) = 0.025
  assert abs(frac - 0.5) < 5 * 0.025


@pytest.mark.parametrize("centered", [True, False])
def test_to_uint8_inverts_preprocess(centered):
  x = all_pixel_values(4)
  for dequant in (False, True):
    y = _jit_pre(jnp.asarray(x), jax.random.key(3), centered=centered,
                 uniform_dequantization=dequant, random_flip=False)
    back = data.to_uint8(y, centered, uniform_dequantization=dequant)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, x)
  # Out-of-range samples clip to 0 / 255.
  lo, hi = transforms.data_range(centered)
  np.testing.assert_array_equal(data.to_uint8(np.array([lo - 1, hi + 1]), centered), [0, 255])


def test_samples_are_truncated_like_improved_diffusion_and_score_sde():
  x = np.array([-1.0, -0.999, 0.0, 0.3, 0.999, 1.0, 1.2])
  truncated = transforms.to_uint8(x, centered=True, quantize="truncate")
  np.testing.assert_array_equal(truncated, np.clip((x + 1) * 127.5, 0, 255).astype(np.uint8))
  rounded = transforms.to_uint8(x, centered=True, quantize="round")
  np.testing.assert_array_equal(rounded, np.floor(np.clip((x + 1) / 2, 0, 1) * 255 + 0.5))
  assert SamplingConfig().quantize == "truncate"


def test_dynamic_binarization_draws_anew_each_step():
  from diffusion.data import make_source  # pylint: disable=import-outside-toplevel
  source = make_source(tiny_config().data)
  get = jax.jit(source.batch_fn(512))
  a, b = get(source.arrays, jax.random.PRNGKey(0)), get(source.arrays, jax.random.PRNGKey(1))
  assert set(np.unique(np.asarray(a))) <= {0.0, 1.0}
  # Pixels of intensity v/255 are 1 with probability v/255: over 512 x 64 pixels the mean
  # matches the data's mean intensity within 5 standard errors.
  images = source.arrays["images"].astype(np.float64) / 255
  p = images.mean()
  assert abs(float(np.asarray(a).mean()) - p) < 5 * math.sqrt(p * (1 - p) / a.size) + 0.02
  assert np.mean(np.asarray(a) != np.asarray(b)) > 0.05


# ---- host-side crops and resizes ------------------------------------------------------------


def test_host_geometry():
  img = np.arange(218 * 178 * 3, dtype=np.int64).reshape(218, 178, 3).astype(np.uint8)
  crop = transforms.center_crop(img, 140)
  np.testing.assert_array_equal(crop, img[39:179, 19:159])    # (218-140)//2, (178-140)//2
  assert transforms.crop_then_resize(img, 140, 64).shape == (64, 64, 3)
  wide = np.zeros((300, 451, 3), np.uint8)
  assert transforms.resize_shorter_then_crop(wide, 256).shape == (256, 256, 3)
  small = np.zeros((13, 40, 1), np.uint8)
  assert transforms.fit_square(small, 32).shape == (32, 32, 1)

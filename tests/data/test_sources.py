"""diffusion/data/sources.py: make_source and its config errors, batches drawn on the
device from (seed, step), and the host iterator's resume, epochs and hosts (digits)."""

import jax
import ml_collections
import numpy as np
import pytest

from diffusion import data
from diffusion.config import DataConfig
from diffusion.errors import ConfigError


def make_cfg(**overrides) -> ml_collections.ConfigDict:
  """A config.data with base defaults (DDPM-style), overridden by keyword."""
  return ml_collections.ConfigDict(dict(DataConfig().to_dict(), **overrides))


# ---- digits (in memory, device path) --------------------------------------------------------


@pytest.fixture(scope="module")
def digits_sources():
  """digits at 8 px, unflipped and flipped (same data), DDPM scaling."""
  plain = data.make_source(make_cfg(dataset="digits", image_size=8, num_channels=1,
                                    random_flip=False))
  flip = data.make_source(make_cfg(dataset="digits", image_size=8, num_channels=1,
                                   random_flip=True))
  return plain, flip


def test_digits_get_batch(digits_sources):
  plain, flip = digits_sources
  get = jax.jit(plain.get_batch, static_argnums=2)
  get_f = jax.jit(flip.get_batch, static_argnums=2)
  arrays = jax.device_put(plain.arrays)
  key = jax.random.fold_in(jax.random.key(0), 5)
  b1, b2 = np.asarray(get(arrays, key, 256)), np.asarray(get(arrays, key, 256))
  assert b1.shape == (256, 8, 8, 1) and b1.dtype == np.float32
  assert b1.min() >= -1 and b1.max() <= 1
  np.testing.assert_array_equal(b1, b2)                     # same (seed, step) -> same batch
  other = np.asarray(get(arrays, jax.random.fold_in(jax.random.key(0), 6), 256))
  assert not np.array_equal(b1, other)
  # Every drawn example is a real digit (after scaling back).
  pool = {im.tobytes() for im in plain.arrays["images"]}
  assert all(im.tobytes() in pool for im in data.to_uint8(b1, True))
  # Flip on/off with the same key: same examples, each kept or mirrored, ~half mirrored.
  bf = np.asarray(get_f(arrays, key, 256))
  same = np.all(bf == b1, axis=(1, 2, 3))
  mirror = np.all(bf == b1[:, :, ::-1], axis=(1, 2, 3))
  assert np.all(same | mirror)
  changed = ~np.all(b1 == b1[:, :, ::-1], axis=(1, 2, 3))   # symmetric digits can't tell
  frac = mirror[changed].mean()                             # SE = 0.5 / sqrt(#changed)
  assert abs(frac - 0.5) < 5 * 0.5 / np.sqrt(changed.sum())


def test_iterator_resume_epochs_and_hosts(digits_sources):
  src, _ = digits_sources
  n, b = src.num_examples, 100
  it = src.iterator(b, seed=3)
  full = [next(it) for _ in range(20)]                       # 2000 examples: crosses an epoch
  assert full[0].shape == (b, 8, 8, 1) and full[0].dtype == np.uint8
  resumed = src.iterator(b, seed=3, start_step=7)
  for step in range(7, 20):
    np.testing.assert_array_equal(next(resumed), full[step])
  assert resumed.next_step == 20
  # One epoch visits every example exactly once.
  idx = np.concatenate([data.batch_indices(n, b, 3, s) for s in range(n // b)])
  np.testing.assert_array_equal(np.sort(idx), np.arange(n))
  assert not np.array_equal(idx, np.concatenate(
      [data.batch_indices(n, b, 4, s) for s in range(n // b)]))  # the seed matters
  # Hosts: the slices of 4 hosts make up the global batch, in order.
  for step in (0, 14, 15):
    parts = [data.batch_indices(n, b, 3, step, p, 4) for p in range(4)]
    np.testing.assert_array_equal(np.concatenate(parts), data.batch_indices(n, b, 3, step))
  host2 = src.iterator(b, seed=3, start_step=2, process_index=2, process_count=4)
  np.testing.assert_array_equal(next(host2), full[2][50:75])
  with pytest.raises(ConfigError, match="multiple of the number of hosts"):
    src.iterator(b, seed=3, process_count=3)


# ---- config errors --------------------------------------------------------------------------


def test_config_errors():
  with pytest.raises(ConfigError, match=r"data\.dataset='foo' is not valid; choose one of .*'mnist'"):
    data.make_source(make_cfg(dataset="foo"))
  with pytest.raises(ConfigError, match=r"data\.dataset='lsun/attic'"):
    data.make_source(make_cfg(dataset="lsun/attic"))
  with pytest.raises(ConfigError, match=r"data\.num_channels=3 does not match data\.dataset='mnist'"):
    data.check_config(make_cfg(dataset="mnist", num_channels=3))
  with pytest.raises(ConfigError, match=r"data\.image_size=12 is not valid for data\.dataset='digits'"):
    data.make_source(make_cfg(dataset="digits", image_size=12, num_channels=1))
  with pytest.raises(ConfigError, match=r"data\.centered='yes'"):
    data.check_config(make_cfg(dataset="digits", image_size=8, num_channels=1, centered="yes"))
  with pytest.raises(ConfigError, match=r"data\.mixture_stds"):
    data.make_source(make_cfg(dataset="mixture", mixture_stds=(1.0,)))
  with pytest.raises(ConfigError, match=r"data\.split='valid'"):
    data.make_source(make_cfg(dataset="digits", image_size=8, num_channels=1), "valid")
  for ok in ("cifar10", "celeb_a", "lsun/church_outdoor", "celeb_a_hq/256", "checkerboard"):
    data.check_config(make_cfg(dataset=ok, image_size=data.dataset_info(ok).image_size or 32))
  info = data.dataset_info("mnist")
  assert (info.image_size, info.num_channels, info.num_examples["train"]) == (28, 1, 60000)
  assert data.dataset_info("lsun/bedroom").tfds_name == "lsun/bedroom"
  assert data.dataset_info("celeb_a_hq/1024").image_size == 1024

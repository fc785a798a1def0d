"""diffusion/data/tfds_sources.py: tfds datasets on tfds.testing.mock_data (in memory and
streaming, geometry against the raw example), fail fast when not prepared, damaged
records named, leftovers of a prepare removed."""

import os
import socket
import time
from unittest import mock

import jax
import numpy as np
import pytest

from diffusion import data
from diffusion.errors import ConfigError

from tests.data.test_sources import make_cfg


@pytest.mark.parametrize("name,size,channels", [
    ("mnist", 28, 1), ("cifar10", 32, 3), ("celeb_a", 64, 3), ("lsun/church_outdoor", 256, 3),
])
def test_missing_tfds_data_fails_fast(tmp_path, monkeypatch, name, size, channels):
  def no_connect(*args, **kwargs):
    raise AssertionError("a network connection was attempted")
  monkeypatch.setattr(socket.socket, "connect", no_connect)
  cfg = make_cfg(dataset=name, image_size=size, num_channels=channels,
                 tfds_data_dir=str(tmp_path))
  start = time.time()
  with pytest.raises(ConfigError) as err:
    data.make_source(cfg)
  assert time.time() - start < 10
  msg = str(err.value)
  assert f"data.dataset={name!r}: no prepared data under {tmp_path}" in msg
  assert f"python -m diffusion.data prepare {name}" in msg and "--manual_dir DIR" in msg
  assert "\n" not in msg


# ---- tfds loaders on mock data --------------------------------------------------------------


@pytest.fixture
def mock_tfds():
  """tfds.testing.mock_data with 12 examples, reported as prepared."""
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=12), mock.patch.object(
      tfds.core.DatasetBuilder, "is_prepared", return_value=True):
    yield tfds


@pytest.mark.parametrize("name,size,channels", [
    ("mnist", 28, 1), ("mnist", 32, 1), ("fashion_mnist", 28, 1), ("cifar10", 32, 3),
])
def test_tfds_in_memory_mock(mock_tfds, name, size, channels):
  src = data.make_source(make_cfg(dataset=name, image_size=size, num_channels=channels,
                                  centered=False, uniform_dequantization=True))
  img = src.arrays["images"]
  assert src.device_resident and img.dtype == np.uint8
  assert img.shape == (12, size, size, channels) and src.shape == (size, size, channels)
  if name == "mnist" and size == 32:   # zero padding, 2 px each side, pixels kept exactly
    native = data.make_source(make_cfg(dataset=name, image_size=28, num_channels=1))
    np.testing.assert_array_equal(img[:, 2:30, 2:30], native.arrays["images"])
    assert not img[:, :2].any() and not img[:, 30:].any() and not img[:, :, :2].any()
  batch = np.asarray(jax.jit(src.get_batch, static_argnums=2)(src.arrays, jax.random.key(0), 8))
  assert batch.shape == (8, size, size, channels) and batch.dtype == np.float32
  assert batch.min() >= 0 and batch.max() <= 1


@pytest.mark.parametrize("name,size", [
    ("celeb_a", 64), ("lsun/church_outdoor", 256), ("celeb_a_hq", 256),
])
def test_tfds_streaming_mock(mock_tfds, name, size):
  src = data.make_source(make_cfg(dataset=name, image_size=size, num_channels=3))
  assert not src.device_resident and src.arrays == {} and src.num_examples == 12
  it = src.iterator(4, seed=1)
  batches = [next(it) for _ in range(5)]                    # 20 > 12: crosses an epoch
  it.close()
  assert all(b.shape == (4, size, size, 3) and b.dtype == np.uint8 for b in batches)
  resumed = src.iterator(4, seed=1, start_step=3)
  for step in (3, 4):
    np.testing.assert_array_equal(next(resumed), batches[step])
  resumed.close()
  x = np.asarray(jax.jit(src.preprocess)(batches[0], jax.random.key(2)))
  assert x.dtype == np.float32 and x.min() >= -1 and x.max() <= 1
  # Geometry against an independent computation on the raw example.
  builder = mock_tfds.builder(dict(celeb_a="celeb_a", celeb_a_hq="celeb_a_hq/256").get(
      name, name))
  raw = np.asarray(builder.as_data_source(split="train")[5]["image"])
  got = src.read(np.array([5]))[0]
  if name == "celeb_a":                     # 218x178 -> centre 140x140 -> 64x64
    from PIL import Image
    ref = np.asarray(Image.fromarray(raw[39:179, 19:159]).resize((64, 64), Image.BILINEAR))
    np.testing.assert_array_equal(got, ref)
  elif name == "celeb_a_hq":                # already 256: untouched
    np.testing.assert_array_equal(got, raw)
  else:                                      # LSUN: any size -> 256x256
    assert got.shape == (256, 256, 3)


# ---- damaged records, leftovers of a prepare ------------------------------------------------


def test_damaged_array_record_names_the_dataset_and_the_prepare_command():
  from diffusion.data import tfds_sources

  class Truncated:
    def __getitems__(self, indices):
      raise RuntimeError("Invalid Riegeli stream: truncated file")

  with pytest.raises(ConfigError, match=r"mnist.*damaged.*python -m diffusion.data prepare "
                                        "mnist"):
    tfds_sources.read_records(Truncated(), [0, 1], "mnist")


def test_prepare_leftovers_are_removed(tmp_path):
  from diffusion.data import tfds_sources
  (tmp_path / "tmp_downloads_abc").mkdir()
  (tmp_path / "mnist" / "incomplete.XYZ").mkdir(parents=True)
  (tmp_path / "mnist" / "3.0.1").mkdir()
  tfds_sources._remove_leftovers(tmp_path, tmp_path / "mnist")  # pylint: disable=protected-access
  assert sorted(os.listdir(tmp_path)) == ["mnist"]
  assert os.listdir(tmp_path / "mnist") == ["3.0.1"]

"""diffusion/data/files.py: the datasets read from files (digits, the shared CIFAR-10
sample, npz), pack, and the hint for a channels-first npz."""

import numpy as np
import pytest

from diffusion import data
from diffusion.data import files
from diffusion.errors import ConfigError

from tests.data.test_sources import make_cfg


def test_digits_values_and_sizes():
  from sklearn.datasets import load_digits
  raw = load_digits().images
  expect = np.rint(raw * 255 / 16).astype(np.uint8)[..., None]
  for split, sl in (("train", slice(0, 1500)), ("test", slice(1500, None))):
    src = data.make_source(make_cfg(dataset="digits", image_size=8, num_channels=1), split)
    img = src.arrays["images"]
    assert img.dtype == np.uint8 and src.shape == (8, 8, 1)
    np.testing.assert_array_equal(img, expect[sl])
    assert src.num_examples == len(expect[sl]) and src.device_resident
  big = data.make_source(make_cfg(dataset="digits", image_size=32, num_channels=1))
  np.testing.assert_array_equal(big.arrays["images"][:, ::4, ::4], expect[:1500])
  np.testing.assert_array_equal(big.arrays["images"][:, 3::4, 3::4], expect[:1500])


@pytest.mark.needs_shared_data
def test_cifar10_sample(shared_data):
  from PIL import Image
  folder = shared_data / "cifar10-sample"
  train = data.make_source(make_cfg(dataset="cifar10_sample", data_dir=str(folder)))
  test = data.make_source(make_cfg(dataset="cifar10_sample"), "test")  # default data_dir
  assert train.arrays["images"].shape == (4000, 32, 32, 3)
  assert test.arrays["images"].shape == (1000, 32, 32, 3)
  rows = np.asarray(Image.open(folder / "cifar10_batch_1.png"))
  np.testing.assert_array_equal(train.arrays["images"][1000 + 17], rows[17].reshape(32, 32, 3))
  rows = np.asarray(Image.open(folder / "cifar10_batch_50.png"))
  np.testing.assert_array_equal(test.arrays["images"][999], rows[999].reshape(32, 32, 3))
  with pytest.raises(ConfigError, match="cifar10_batch_0.png"):
    data.make_source(make_cfg(dataset="cifar10_sample", data_dir=str(shared_data / "mnist")))


def test_npz_and_pack(tmp_path):
  from PIL import Image
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(10, 12, 12, 3), dtype=np.uint8)
  path = tmp_path / "mine.npz"
  np.savez(path, images=images, test_images=images[:3])
  cfg = make_cfg(dataset="npz", data_dir=str(path), image_size=12, num_channels=3)
  src = data.make_source(cfg)
  np.testing.assert_array_equal(src.arrays["images"], images)
  assert data.make_source(cfg, "test").num_examples == 3
  cfg.image_size = 8
  assert data.make_source(cfg).arrays["images"].shape == (10, 8, 8, 3)
  np.savez(tmp_path / "gray.npz", images=images[..., 0])
  gray = data.make_source(make_cfg(dataset="npz", data_dir=str(tmp_path / "gray.npz"),
                                   image_size=12, num_channels=1))
  assert gray.shape == (12, 12, 1)
  np.savez(tmp_path / "float.npz", images=images.astype(np.float32))
  with pytest.raises(ConfigError, match="must be uint8"):
    data.make_source(make_cfg(dataset="npz", data_dir=str(tmp_path / "float.npz"),
                              image_size=12))
  with pytest.raises(ConfigError, match=r"key 'validation_images'"):
    data.make_source(cfg, "validation")
  with pytest.raises(ConfigError, match=r"data\.data_dir=''"):
    data.make_source(make_cfg(dataset="npz"))
  # pack: a folder of images of mixed sizes -> npz -> a source.
  folder = tmp_path / "imgs"
  (folder / "sub").mkdir(parents=True)
  for i, (h, w) in enumerate([(20, 30), (16, 16), (40, 18)]):
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
        folder / ("sub" if i else "") / f"{i}.png")
  out = tmp_path / "packed.npz"
  assert files.pack_images(str(folder), str(out), 16) == 3
  packed = data.make_source(make_cfg(dataset="npz", data_dir=str(out), image_size=16))
  assert packed.arrays["images"].shape == (3, 16, 16, 3)


def test_channels_first_npz_gets_a_hint(tmp_path):
  from diffusion import make_source  # pylint: disable=import-outside-toplevel
  path = tmp_path / "cf.npz"
  np.savez(path, images=np.zeros((4, 3, 8, 8), np.uint8))
  with pytest.raises(ConfigError, match="channels-first"):
    make_source({"dataset": "npz", "data_dir": str(path), "image_size": 8, "num_channels": 3})

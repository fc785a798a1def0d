"""Tests for diffusion.data: loaders, device preprocessing, batch order, toys, prepare.

Monte Carlo checks state their standard error (SE) and allow 5 SE, so a
correct implementation fails with probability < 1e-6 per check. tfds loaders
run on tfds.testing.mock_data (a few generated examples); the real offline
prepare runs on ../shared/data/mnist when that folder exists.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time
from unittest import mock

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import integrate

from diffusion import data
from diffusion.config import DataConfig
from diffusion.data import files, toy, transforms
from diffusion.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[1]


def make_cfg(**overrides) -> ml_collections.ConfigDict:
  """A config.data with base defaults (DDPM-style), overridden by keyword."""
  return ml_collections.ConfigDict(dict(DataConfig().to_dict(), **overrides))


def all_pixel_values(batch: int = 64) -> np.ndarray:
  """uint8 [batch, 16, 16, 1]: every value 0..255 once per image."""
  return np.tile(np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1), (batch, 1, 1, 1))


_jit_pre = jax.jit(transforms.preprocess, static_argnames=(
    "centered", "uniform_dequantization", "random_flip"))


# ----------------------------------------------------------------------------
# Device preprocessing


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


def test_host_geometry():
  img = np.arange(218 * 178 * 3, dtype=np.int64).reshape(218, 178, 3).astype(np.uint8)
  crop = transforms.center_crop(img, 140)
  np.testing.assert_array_equal(crop, img[39:179, 19:159])    # (218-140)//2, (178-140)//2
  assert transforms.crop_then_resize(img, 140, 64).shape == (64, 64, 3)
  wide = np.zeros((300, 451, 3), np.uint8)
  assert transforms.resize_shorter_then_crop(wide, 256).shape == (256, 256, 3)
  small = np.zeros((13, 40, 1), np.uint8)
  assert transforms.fit_square(small, 32).shape == (32, 32, 1)


# ----------------------------------------------------------------------------
# digits (in memory, device path)


@pytest.fixture(scope="module")
def digits_sources():
  """digits at 8 px, unflipped and flipped (same data), DDPM scaling."""
  plain = data.make_source(make_cfg(dataset="digits", image_size=8, num_channels=1,
                                    random_flip=False))
  flip = data.make_source(make_cfg(dataset="digits", image_size=8, num_channels=1,
                                   random_flip=True))
  return plain, flip


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


# ----------------------------------------------------------------------------
# Config errors and missing data


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


def test_import_is_light():
  code = ("import sys, diffusion.data; "
          "print(any(m in sys.modules for m in ('tensorflow', 'tensorflow_datasets')))")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == "False"


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


# ----------------------------------------------------------------------------
# Prepared data read without tfds (the light core: diffusion/data/prepared.py)


def _write_prepared_mnist(root: pathlib.Path, splits) -> None:
  """A tfds-shaped prepared ``mnist`` 3.0.1 folder: dataset_info.json and array_record
  shards of records serialized by TensorFlow's own tf.train.Example (the independent
  encoder), images as PNG. ``splits``: name -> list of shards, each (images, labels)."""
  import io  # pylint: disable=import-outside-toplevel
  tf = pytest.importorskip("tensorflow")
  from array_record.python import array_record_module  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  folder = root / "mnist" / "3.0.1"
  folder.mkdir(parents=True)
  info = {"name": "mnist", "fileFormat": "array_record", "version": "3.0.1", "splits": []}
  for split, shards in splits.items():
    info["splits"].append({"name": split, "shardLengths": [str(len(im)) for im, _ in shards],
                           "filepathTemplate": "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"})
    for i, (images, labels) in enumerate(shards):
      path = folder / f"mnist-{split}.array_record-{i:05d}-of-{len(shards):05d}"
      writer = array_record_module.ArrayRecordWriter(str(path), "group_size:1")
      for image, label in zip(images, labels):
        png = io.BytesIO()
        Image.fromarray(image[..., 0]).save(png, format="PNG")
        feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png.getvalue()])),
                   "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))}
        writer.write(tf.train.Example(features=tf.train.Features(feature=feature))
                     .SerializeToString())
      writer.close()
  (folder / "dataset_info.json").write_text(json.dumps(info))


def test_prepared_data_is_read_without_tfds(tmp_path, monkeypatch):
  """The light core trains on prepared MNIST: with tensorflow_datasets not importable,
  make_source reads the array_record shards in order (two shards of train), the images
  and labels exactly as written."""
  rng = np.random.default_rng(0)
  shards = [(rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, n))
            for n in (3, 2)]
  test = (rng.integers(0, 256, (4, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, 4))
  _write_prepared_mnist(tmp_path, {"train": shards, "test": [test]})
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)   # import fails
  cfg = make_cfg(dataset="mnist", image_size=28, num_channels=1, tfds_data_dir=str(tmp_path))
  train = data.make_source(cfg).arrays
  np.testing.assert_array_equal(train["images"], np.concatenate([im for im, _ in shards]))
  np.testing.assert_array_equal(train["labels"], np.concatenate([lb for _, lb in shards]))
  np.testing.assert_array_equal(data.make_source(cfg, "test").arrays["images"], test[0])
  from diffusion.data import prepared  # pylint: disable=import-outside-toplevel
  split = prepared.PreparedDataset(tmp_path / "mnist" / "3.0.1").as_data_source("train")
  picked = split.__getitems__([4, 0, 3])     # across shards, in the order asked
  assert [int(r["label"]) for r in picked] == [shards[1][1][1], shards[0][1][0],
                                               shards[1][1][0]]
  with pytest.raises(ConfigError, match=r"no prepared data under .*fashion_mnist.*pip "
                     r"install '\.\[tfds\]'"):
    data.make_source(make_cfg(dataset="fashion_mnist", image_size=28, num_channels=1,
                              tfds_data_dir=str(tmp_path)))


def test_tf_example_parser_against_tensorflow():
  """parse_example reads what TensorFlow writes: bytes, floats, packed and negative int64s."""
  tf = pytest.importorskip("tensorflow")
  from diffusion.data import prepared  # pylint: disable=import-outside-toplevel
  feature = {"b": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x", b"\x00yz"])),
             "f": tf.train.Feature(float_list=tf.train.FloatList(value=[0.5, -2.25, 1e-3])),
             "i": tf.train.Feature(int64_list=tf.train.Int64List(value=[0, -1, 2**40, 7]))}
  record = tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
  parsed = prepared.parse_example(record)
  assert parsed["b"] == [b"x", b"\x00yz"] and parsed["i"] == [0, -1, 2**40, 7]
  np.testing.assert_array_equal(np.float32(parsed["f"]), np.float32([0.5, -2.25, 1e-3]))


# ----------------------------------------------------------------------------
# tfds loaders on mock data


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


# ----------------------------------------------------------------------------
# Files: the shared CIFAR-10 sample, npz, pack


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


# ----------------------------------------------------------------------------
# Toy distributions (Monte Carlo, 5 SE)

N_TOY = 200_000


def _draw(name, **cfg):
  src = data.make_source(make_cfg(dataset=name, **cfg))
  x = np.asarray(jax.jit(src.get_batch, static_argnums=2)({}, jax.random.key(11), N_TOY),
                 np.float64)
  assert x.shape == (N_TOY, src.shape[0]) and src.arrays == {}
  return src, x


def _assert_mean(samples, expected):
  """Sample mean within 5 SE (SE = sample std / sqrt(n)) of the expectation."""
  se = samples.std(ddof=1) / np.sqrt(samples.size)
  assert abs(samples.mean() - expected) < 5 * se, (samples.mean(), expected, se)


def test_swiss_roll_moments():
  _, x = _draw("swiss_roll")
  a, b = 1.5 * np.pi, 4.5 * np.pi
  s, sd = toy.SWISS_ROLL_SCALE, toy.SWISS_ROLL_NOISE

  def moment(f):   # E_t[f(t)] for t ~ U[a, b], by quadrature
    return integrate.quad(f, a, b, limit=200)[0] / (b - a)

  _assert_mean(x[:, 0], s * moment(lambda t: t * np.cos(t)))
  _assert_mean(x[:, 1], s * moment(lambda t: t * np.sin(t)))
  _assert_mean(x[:, 0] ** 2, s**2 * (moment(lambda t: (t * np.cos(t)) ** 2) + sd**2))
  _assert_mean(x[:, 1] ** 2, s**2 * (moment(lambda t: (t * np.sin(t)) ** 2) + sd**2))
  radius = np.hypot(x[:, 0], x[:, 1]) / s
  assert np.mean((radius > a - 3) & (radius < b + 3)) > 0.99


def test_mixture_weights_and_moments():
  # NCSN default: 0.8 N((5,5), I) + 0.2 N((-5,-5), I). Modes are 7 sigma from the
  # boundary x+y=0, so the side of the boundary tells the component.
  _, x = _draw("mixture")
  upper = x.sum(1) > 0
  _assert_mean(upper.astype(float), 0.8)                   # SE = sqrt(.8·.2/n) ≈ 9e-4
  for sel, mu in ((upper, 5.0), (~upper, -5.0)):
    for d in range(2):
      _assert_mean(x[sel, d], mu)
      _assert_mean((x[sel, d] - mu) ** 2, 1.0)
  # A 3-component mixture with unequal stds in 2-D.
  w, mu, sd = (0.5, 0.3, 0.2), ((0.0, 0.0), (20.0, 0.0), (0.0, 20.0)), (1.0, 2.0, 0.5)
  _, x = _draw("mixture", mixture_weights=w, mixture_means=mu, mixture_stds=sd)
  comp = np.argmin(((x[:, None] - np.asarray(mu)[None]) ** 2).sum(-1), axis=1)
  for k in range(3):
    _assert_mean((comp == k).astype(float), w[k])
    _assert_mean((x[comp == k] - mu[k]) ** 2, sd[k] ** 2)


def test_eight_gaussians():
  _, x = _draw("eight_gaussians")
  ang = np.arange(8) * np.pi / 4
  centers = toy.EIGHT_GAUSSIANS_RADIUS * np.stack([np.cos(ang), np.sin(ang)], -1)
  comp = np.argmin(((x[:, None] - centers[None]) ** 2).sum(-1), axis=1)
  for k in range(8):
    _assert_mean((comp == k).astype(float), 1 / 8)
    _assert_mean((x[comp == k] - centers[k]) ** 2, toy.EIGHT_GAUSSIANS_STD ** 2)


def test_checkerboard():
  _, x = _draw("checkerboard")
  assert x.min() >= -4 and x.max() < 4
  cell = np.floor(x / 2).astype(int)                        # square indices in -2..1
  assert np.all((cell.sum(1) % 2) == 0)                     # only black squares
  sq = (cell[:, 0] + 2) * 4 + (cell[:, 1] + 2)
  counts = np.bincount(sq, minlength=16)
  assert np.count_nonzero(counts) == 8
  for c in counts[counts > 0]:                              # 1/8 each, SE sqrt(p(1-p)/n)
    assert abs(c / N_TOY - 1 / 8) < 5 * np.sqrt(1 / 8 * 7 / 8 / N_TOY)
  _assert_mean(np.mod(x, 2).ravel(), 1.0)                   # uniform inside a square


def test_toy_determinism_and_stream():
  src = data.make_source(make_cfg(dataset="checkerboard"))
  key = jax.random.fold_in(jax.random.key(5), 9)
  np.testing.assert_array_equal(src.get_batch({}, key, 16), src.get_batch({}, key, 16))
  it = src.iterator(16, seed=5)
  full = [next(it) for _ in range(4)]
  np.testing.assert_array_equal(full[3], next(src.iterator(16, seed=5, start_step=3)))
  np.testing.assert_array_equal(next(src.iterator(16, 5, 1, process_index=1, process_count=2)),
                                full[1][8:])
  assert src.x_range is None and not src.is_image


# ----------------------------------------------------------------------------
# Offline prepare on the shared MNIST files (real tfds build)


@pytest.mark.slow
@pytest.mark.needs_shared_data
def test_prepare_mnist_offline(shared_data, tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  start = time.time()
  proc = subprocess.run(
      [sys.executable, "-m", "diffusion.data", "prepare", "mnist",
       "--manual_dir", str(shared_data / "mnist"), "--data_dir", str(tmp_path)],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "mnist: prepared at" in proc.stdout
  assert time.time() - start < 200
  assert sorted(p.name for p in (tmp_path / "mnist" / "3.0.1").glob("*.array_record*")) == [
      "mnist-test.array_record-00000-of-00001", "mnist-train.array_record-00000-of-00001"]
  assert not (tmp_path / "downloads").exists()    # extraction went to a temporary dir
  # Read it back in a fresh process: no TensorFlow and no tfds (the light core), reference
  # statistics (docs/checkable_values.md item 32a).
  code = f"""
import json, sys
sys.modules['tensorflow_datasets'] = None   # the light core: no tfds installed
import numpy as np
from diffusion import data
from diffusion.config import DataConfig
import ml_collections
cfg = ml_collections.ConfigDict(dict(DataConfig().to_dict(), dataset='mnist', image_size=28,
                                     num_channels=1, tfds_data_dir={str(tmp_path)!r}))
tr = data.make_source(cfg).arrays['images']
te = data.make_source(cfg, 'test').arrays['images']
x = tr.astype(np.float64) / 255
print(json.dumps(dict(train=tr.shape, test=te.shape, mean=x.mean(), std=x.std(),
                      zeros=float((tr == 0).mean()), tf='tensorflow' in sys.modules)))
"""
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  stats = json.loads(out.stdout.strip().splitlines()[-1])
  assert stats["train"] == [60000, 28, 28, 1] and stats["test"] == [10000, 28, 28, 1]
  assert abs(stats["mean"] - 0.1306605) < 1e-6 and abs(stats["std"] - 0.3081078) < 1e-6
  assert abs(stats["zeros"] - 0.80880) < 5e-5
  assert stats["tf"] is False
  # Preparing again is a no-op; a folder without the files fails at once, offline.
  empty = tmp_path / "empty"
  empty.mkdir()
  proc = subprocess.run(
      [sys.executable, "-m", "diffusion.data", "prepare", "mnist", "--manual_dir", str(empty),
       "--data_dir", str(tmp_path / "other")],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
  assert proc.returncode == 2 and "lacks train-images-idx3-ubyte.gz" in proc.stderr

"""diffusion/data/prepared.py: tfds-prepared data read without tfds or TensorFlow (the light
core): array_record shards of tf.Example records with PNG images, checked against records
that TensorFlow itself serialized."""

import json
import pathlib
import sys

import numpy as np
import pytest

from diffusion import data
from diffusion.errors import ConfigError

from tests.data.test_sources import make_cfg


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

"""Datasets prepared by tfds, read without tfds or TensorFlow (the light core).

``python -m diffusion.data prepare NAME`` (the ``tfds`` extra) writes one folder per
dataset version, ``<data_dir>/<name>[/<config>]/<version>/``, holding:

* ``dataset_info.json``: the file format (``array_record``), the file-name template
  ``{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}`` and each split's shard lengths;
* ``features.json``: the features (e.g. ``image``: uint8 [28, 28, 1]; ``label``);
* the shards, ``mnist-train.array_record-00000-of-00001``: array_record files (the
  ``array_record`` package reads them), one record per example, each a serialized
  ``tf.train.Example`` (protobuf): a map from feature name to a list of bytes, floats or
  int64s; an image is its PNG (or JPEG) file as one bytes value, a class label one int64.

:class:`PreparedDataset` answers what the tfds builder answers for reading
(``data_dir``, ``info.file_format``, ``as_data_source(split)``), so the readers of
:mod:`diffusion.data.tfds_sources` take either. Records decode to ``{"image": uint8
[H, W, C], "label": int}`` (the features the sources use).
"""

import io
import json
import pathlib
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from diffusion.errors import ConfigError


def default_data_dir() -> pathlib.Path:
  """tfds's default data dir (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``)."""
  import os  # pylint: disable=import-outside-toplevel
  return pathlib.Path(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets").expanduser()


def _version_key(name: str) -> Tuple[int, ...]:
  return tuple(int(p) for p in name.split("."))


def version_dir(tfds_name: str, data_dir: str = "") -> Optional[pathlib.Path]:
  """The newest prepared version of ``tfds_name`` (``mnist``, ``celeb_a_hq/256``) under
  ``data_dir`` (default: tfds's), or None when none is complete."""
  folder = (pathlib.Path(data_dir).expanduser() if data_dir else default_data_dir()) / tfds_name
  if not folder.is_dir():
    return None
  versions = [p for p in folder.iterdir() if re.fullmatch(r"\d+\.\d+\.\d+", p.name)
              and (p / "dataset_info.json").is_file()]
  return max(versions, key=lambda p: _version_key(p.name)) if versions else None


class _Info:
  """The parts of dataset_info.json the readers use."""

  def __init__(self, path: pathlib.Path):
    try:
      info = json.loads((path / "dataset_info.json").read_text())
      self.name = str(info["name"])
      self.file_format = str(info.get("fileFormat", "tfrecord"))
      self.splits = {str(s["name"]): (str(s.get("filepathTemplate") or
                                          "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"),
                                      [int(n) for n in s.get("shardLengths", [])])
                     for s in info["splits"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise ConfigError(f"{path / 'dataset_info.json'} is not a tfds dataset description "
                        f"({type(e).__name__}: {e}); prepare the dataset again.") from None


class PreparedDataset:
  """One prepared dataset version folder, read without tfds (see the module docstring)."""

  def __init__(self, path: pathlib.Path):
    self.data_dir = path
    self.info = _Info(path)

  def as_data_source(self, split: str) -> "ArrayRecordSplit":
    if self.info.file_format != "array_record":
      raise NotImplementedError(self.info.file_format)
    if split not in self.info.splits:
      raise KeyError(f"{split!r} is not among {sorted(self.info.splits)}")
    template, lengths = self.info.splits[split]
    files = [self.data_dir / template.format(
        DATASET=self.info.name, SPLIT=split, FILEFORMAT="array_record",
        SHARD_X_OF_Y=f"{i:05d}-of-{len(lengths):05d}") for i in range(len(lengths))]
    return ArrayRecordSplit(files, lengths)


class ArrayRecordSplit:
  """Random access to the examples of one split's shards: ``len``, ``[i]`` and
  ``__getitems__(indices)`` (a batched read), as tfds's array_record data source."""

  def __init__(self, files: Sequence[pathlib.Path], lengths: Sequence[int]):
    # Imported here: a small compiled package of the light core, needed only for tfds data.
    from array_record.python import array_record_module  # pylint: disable=import-outside-toplevel
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
      raise ConfigError(f"{missing[0]} is missing: the prepared dataset is incomplete; "
                        "delete its folder and prepare it again.")
    self._readers = [array_record_module.ArrayRecordReader(str(f), "readahead_buffer_size:0")
                     for f in files]
    self._starts = np.cumsum([0, *lengths])

  def __len__(self) -> int:
    return int(self._starts[-1])

  def __getitem__(self, i: int) -> Dict[str, np.ndarray]:
    return self.__getitems__([i])[0]

  def __getitems__(self, indices: Sequence[int]) -> List[Dict[str, np.ndarray]]:
    indices = np.asarray(indices, np.int64)
    if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
      raise IndexError(f"example index out of range [0, {len(self)})")
    shard = np.searchsorted(self._starts, indices, side="right") - 1
    out: List[Optional[Dict[str, np.ndarray]]] = [None] * len(indices)
    for s in np.unique(shard):
      where = np.flatnonzero(shard == s)
      records = self._readers[s].read([int(i) for i in indices[where] - self._starts[s]])
      for w, record in zip(where, records):
        out[w] = decode_example(record)
    return out


def decode_example(record: bytes) -> Dict[str, np.ndarray]:
  """A tfds record (a serialized ``tf.train.Example``) as ``{"image": uint8 [H, W, C],
  "label": int64, ...}``: images decoded by Pillow, other features as numpy arrays."""
  out = {}
  for name, values in parse_example(record).items():
    if name == "image" or (values and isinstance(values[0], bytes) and
                           values[0][:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xe1")):
      out[name] = _decode_image(values[0])
    elif name == "label" and len(values) == 1:
      out[name] = np.int64(values[0])
    else:
      out[name] = np.asarray(values)
  return out


def _decode_image(data: bytes) -> np.ndarray:
  with Image.open(io.BytesIO(data)) as im:
    x = np.asarray(im)
  return (x[..., None] if x.ndim == 2 else x).astype(np.uint8)


# ---- tf.train.Example in protobuf's wire format -------------------------------------------
# Example {Features features = 1}; Features {map<string, Feature> feature = 1} (each map
# entry a message {string key = 1; Feature value = 2}); Feature {oneof: BytesList = 1,
# FloatList = 2, Int64List = 3}, each {repeated value = 1} (floats and int64s packed or not).


def _varint(buf: bytes, pos: int) -> Tuple[int, int]:
  result, shift = 0, 0
  while True:
    if pos >= len(buf):
      raise ValueError("truncated varint")
    b = buf[pos]
    pos += 1
    result |= (b & 0x7F) << shift
    if not b & 0x80:
      return result, pos
    shift += 7


def _fields(buf: bytes):
  """(field number, wire type, value) of a message: an int for varints, bytes otherwise."""
  pos = 0
  while pos < len(buf):
    key, pos = _varint(buf, pos)
    number, wire = key >> 3, key & 7
    if wire == 0:
      value, pos = _varint(buf, pos)
    elif wire == 2:
      size, pos = _varint(buf, pos)
      value, pos = buf[pos:pos + size], pos + size
    elif wire == 5:
      value, pos = buf[pos:pos + 4], pos + 4
    elif wire == 1:
      value, pos = buf[pos:pos + 8], pos + 8
    else:
      raise ValueError(f"unsupported wire type {wire}")
    yield number, wire, value


def _int64s(field_value, wire: int) -> List[int]:
  if wire == 0:
    return [field_value - (1 << 64) if field_value >= 1 << 63 else field_value]
  values, pos = [], 0
  while pos < len(field_value):   # packed
    v, pos = _varint(field_value, pos)
    values.append(v - (1 << 64) if v >= 1 << 63 else v)
  return values


def _feature(buf: bytes) -> list:
  for kind, _, inner in _fields(buf):
    values: list = []
    for number, wire, v in _fields(inner):
      if number != 1:
        continue
      if kind == 1:
        values.append(bytes(v))
      elif kind == 2:
        values.extend(np.frombuffer(v, "<f4").tolist())
      elif kind == 3:
        values.extend(_int64s(v, wire))
    return values
  return []


def parse_example(record: bytes) -> Dict[str, list]:
  """A serialized ``tf.train.Example`` as ``{feature name: [values]}`` (bytes, floats or
  ints); ValueError for bytes that are not one."""
  out = {}
  for number, _, features in _fields(record):
    if number != 1:
      continue
    for entry_number, _, entry in _fields(features):
      if entry_number != 1:
        continue
      key, value = None, b""
      for n, _, v in _fields(entry):
        if n == 1:
          key = bytes(v).decode()
        elif n == 2:
          value = v
      if key is not None:
        out[key] = _feature(value)
  return out

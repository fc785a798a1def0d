"""Converter of pytorch-fid's Inception weights (a PyTorch checkpoint) to the .npz we read.

  python -m diffusion.inception_convert pt_inception-2015-12-05-6726825d.pth inception_fid.npz

The source must be pytorch-fid's release file, the weights every FID in the papers'
tables was computed with (through TF's inception-2015-12-05): its SHA-256 must start
with 6726825d, the hash its file name carries (the torch.hub convention, which
``torch.hub`` checks the same way). ``--any_weights`` converts another file anyway
(its FIDs are then not comparable with published ones).

Uses ``torch.load(..., weights_only=True)`` when PyTorch is installed and
otherwise a built-in reader of the PyTorch checkpoint formats (zip and legacy)
that only rebuilds plain tensors: a restricted unpickler that never imports or
runs code from the file. The result is checked against the network's shapes
(:mod:`diffusion.inception`).
"""

import collections
import dataclasses
import hashlib
import io
import pickle
import sys
import zipfile
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from diffusion.inception import load_variables


def state_dict_to_arrays(state_dict: Mapping[str, Any]) -> Dict[str, np.ndarray]:
  """PyTorch FID-Inception state_dict (name -> array-like) -> npz arrays in our naming.

  conv ``weight`` [O, I, kh, kw] -> ``conv/kernel`` [kh, kw, I, O];
  bn ``weight/bias/running_mean/running_var`` -> ``bn/scale, bn/bias, bn/mean, bn/var``;
  ``fc.weight`` [1008, 2048] -> ``fc/kernel`` [2048, 1008]; ``fc.bias`` -> ``fc/bias``.
  ``num_batches_tracked`` and auxiliary-classifier entries are dropped.
  """
  out: Dict[str, np.ndarray] = {}
  rename = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
  for name, value in state_dict.items():
    a = np.asarray(value)
    parts = name.split(".")
    if parts[-1] == "num_batches_tracked" or parts[0] == "AuxLogits":
      continue
    if parts[0] == "fc":
      out["fc/kernel" if parts[1] == "weight" else "fc/bias"] = (
          a.T if parts[1] == "weight" else a).astype(np.float32)
    elif parts[-2] == "conv" and parts[-1] == "weight":
      out["/".join(parts[:-1] + ["kernel"])] = np.transpose(a, (2, 3, 1, 0)).astype(np.float32)
    elif parts[-2] == "bn" and parts[-1] in rename:
      out["/".join(parts[:-1] + [rename[parts[-1]]])] = a.astype(np.float32)
    else:
      raise ValueError(f"unexpected entry {name!r} in the Inception state_dict")
  return out


# ---- PyTorch checkpoint reading without torch ------------------------------

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": None, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


@dataclasses.dataclass
class _StorageType:
  name: str

  @property
  def dtype(self):
    dt = _STORAGE_DTYPES.get(self.name)
    if dt is None:
      raise ValueError(f"unsupported tensor storage {self.name}")
    return np.dtype(dt)


@dataclasses.dataclass
class _Storage:
  dtype: np.dtype
  numel: int
  data: Optional[np.ndarray] = None  # filled once the bytes are read


@dataclasses.dataclass
class _LazyTensor:
  storage: _Storage
  offset: int
  size: Tuple[int, ...]
  stride: Tuple[int, ...]

  def materialize(self) -> np.ndarray:
    base = self.storage.data
    item = base.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        base[self.offset:], shape=self.size, strides=tuple(s * item for s in self.stride))
    return np.array(view)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *unused):
  return _LazyTensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *unused):
  return data


class _RestrictedUnpickler(pickle.Unpickler):
  """Rebuilds only OrderedDicts and tensors; refuses every other global."""

  def __init__(self, file, storages: Dict[str, _Storage], read_storage: Optional[Callable]):
    super().__init__(file)
    self._storages = storages
    self._read_storage = read_storage

  def find_class(self, module, name):
    if module == "collections" and name == "OrderedDict":
      return collections.OrderedDict
    if module == "torch._utils" and name == "_rebuild_tensor_v2":
      return _rebuild_tensor_v2
    if module == "torch._utils" and name == "_rebuild_parameter":
      return _rebuild_parameter
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(name)
    raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
      raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
    storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])  # pid[3]: device location, unused
    view = pid[5] if len(pid) > 5 else None
    if view is not None:
      raise pickle.UnpicklingError("storage views are not supported")
    if key not in self._storages:
      st = _Storage(storage_type.dtype, numel)
      if self._read_storage is not None:
        st.data = self._read_storage(key, st)
      self._storages[key] = st
    return self._storages[key]


def _materialize(obj):
  if isinstance(obj, _LazyTensor):
    return obj.materialize()
  if isinstance(obj, Mapping):
    return {k: _materialize(v) for k, v in obj.items()}
  return obj


def read_torch_checkpoint(path: str) -> Dict[str, np.ndarray]:
  """Reads a PyTorch state_dict file (zip or legacy format) into numpy, without torch."""
  if zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as zf:
      names = zf.namelist()
      pkl = [n for n in names if n.endswith("data.pkl")]
      if len(pkl) != 1:
        raise ValueError(f"{path}: not a PyTorch zip checkpoint (no unique data.pkl)")
      root = pkl[0][:-len("data.pkl")]

      def read_storage(key, st):
        raw = zf.read(f"{root}data/{key}")
        return np.frombuffer(raw, dtype=st.dtype, count=st.numel).copy()

      obj = _RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])), {}, read_storage).load()
      return _materialize(obj)
  with open(path, "rb") as f:
    # Legacy format: magic, protocol, sys_info pickles; the object pickle; the
    # list of storage keys; then per storage an int64 element count + raw bytes.
    safe = lambda: _RestrictedUnpickler(f, {}, None).load()  # noqa: E731
    if safe() != _LEGACY_MAGIC:
      raise ValueError(f"{path}: not a PyTorch checkpoint (bad magic number)")
    safe()  # protocol version
    safe()  # sys_info
    storages: Dict[str, _Storage] = {}
    obj = _RestrictedUnpickler(f, storages, None).load()
    keys = _RestrictedUnpickler(f, {}, None).load()
    for key in keys:
      st = storages[str(key)]
      numel = int(np.frombuffer(f.read(8), "<i8")[0])
      st.data = np.frombuffer(f.read(numel * st.dtype.itemsize), dtype=st.dtype).copy()
    return _materialize(obj)


def load_state_dict(path: str) -> Dict[str, np.ndarray]:
  """torch.load(weights_only=True) when torch is installed, else the built-in reader."""
  try:
    import torch  # pylint: disable=import-outside-toplevel  # optional and heavy
  except ImportError:
    torch = None
  if torch is not None:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.detach().cpu().numpy() for k, v in sd.items()}
  return read_torch_checkpoint(path)


EXPECTED_SHA256_PREFIX = "6726825d"   # pt_inception-2015-12-05-6726825d.pth (pytorch-fid)


def sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def convert(src: str, dst: str, any_weights: bool = False) -> Dict[str, np.ndarray]:
  """Converts pytorch-fid's .pth to our .npz and checks it against the network's shapes.

  Raises ValueError when the file's SHA-256 does not start with
  :data:`EXPECTED_SHA256_PREFIX` (unless ``any_weights``)."""
  digest = sha256(src)
  if not any_weights and not digest.startswith(EXPECTED_SHA256_PREFIX):
    raise ValueError(f"its SHA-256 is {digest[:16]}..., not pytorch-fid's "
                     f"pt_inception-2015-12-05 weights ({EXPECTED_SHA256_PREFIX}...); "
                     "FIDs from other weights are not comparable with the papers' "
                     "(pass --any_weights to convert it anyway)")
  arrays = state_dict_to_arrays(load_state_dict(src))
  np.savez(dst, **arrays)
  load_variables(dst if dst.endswith(".npz") else dst + ".npz")  # validates names/shapes
  return arrays


def main(argv: Sequence[str]) -> int:
  usage = "usage: python -m diffusion.inception_convert SRC.pth DST.npz [--any_weights]"
  any_weights = "--any_weights" in argv
  argv = [a for a in argv if a != "--any_weights"]
  if len(argv) != 2:
    print(usage, file=sys.stderr)
    return 2
  try:
    arrays = convert(argv[0], argv[1], any_weights=any_weights)
  except (OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
    print(f"error: cannot convert {argv[0]!r}: {e}", file=sys.stderr)
    return 1
  n = sum(a.size for a in arrays.values())
  print(f"wrote {argv[1]}: {len(arrays)} arrays, {n:,} numbers")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))

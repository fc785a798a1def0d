"""PyTorch checkpoints read into numpy without torch and without running their code.

A weights file is untrusted input: a pickle can name any Python callable, and
``pickle.load`` would call it. :func:`read_torch_checkpoint` reads both PyTorch
file formats (the zip of ``torch.save`` since 1.6, and the legacy stream) through
a restricted unpickler that rebuilds only tensors, their storages, ordered dicts
and plain values (numbers, strings, lists, tuples, dicts); any other global is
refused with one line naming it, so a crafted checkpoint can never run code.
Every pickle the project reads (the FID Inception weights, the DDPM and NCSN
releases) goes through here.
"""

import collections
import dataclasses
import io
import pickle
import zipfile
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np


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
  """Tensors inside nested dicts, lists and tuples as numpy arrays."""
  if isinstance(obj, _LazyTensor):
    return obj.materialize()
  if isinstance(obj, Mapping):
    return {k: _materialize(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialize(v) for v in obj)
  return obj


def read_torch_checkpoint(path: str) -> Any:
  """The object a PyTorch file holds (zip or legacy format), tensors as numpy arrays.

  Raises pickle.UnpicklingError naming any global other than tensors, storages and
  OrderedDict; ValueError for a file that is not a PyTorch checkpoint."""
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
  """A state_dict file (name -> tensor) as {name: numpy array}, through the restricted reader."""
  sd = read_torch_checkpoint(path)
  if not isinstance(sd, Mapping):
    raise ValueError(f"{path}: holds a {type(sd).__name__}, not a state_dict (name -> tensor)")
  return dict(sd)

"""PyTorch checkpoints read into numpy without torch and without running their code.

A weights file is untrusted input: a pickle can name any Python callable, and
``pickle.load`` would call it. :func:`read_torch_checkpoint` reads both PyTorch
file formats (the zip of ``torch.save`` since 1.6, and the legacy stream) through
a restricted unpickler that rebuilds only tensors, their storages, ordered dicts
and plain values (numbers, strings, lists, tuples, dicts); any other global is
refused with one line naming it, so a crafted checkpoint can never run code.
Every pickle the project reads (the FID Inception weights, the DDPM and NCSN
releases) goes through here.

Beyond the globals, the bytes are checked before they are used: every storage's
length must equal its element count times the element size (a truncated file, or
a zip entry that claims more, is refused before it is read into memory), and every
tensor view (offset, sizes, strides) must lie inside its storage, so a crafted
view cannot read memory outside it. Failures are one line naming the file:
``pickle.UnpicklingError`` for a refused global, ``ValueError`` for a malformed or
truncated file.
"""

import collections
import dataclasses
import io
import os
import pickle
import struct
import zipfile
import zlib
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np


_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": None, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


class RefusedGlobal(pickle.UnpicklingError):
  """A weights file names a global the restricted unpickler does not rebuild."""


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
  loader: Optional[Callable[[], np.ndarray]] = None  # reads them (zip format: on first use)

  def ensure(self) -> np.ndarray:
    if self.data is None and self.loader is not None:
      self.data = self.loader()
    return self.data


@dataclasses.dataclass
class _LazyTensor:
  storage: _Storage
  offset: int
  size: Tuple[int, ...]
  stride: Tuple[int, ...]

  def materialize(self) -> np.ndarray:
    """The tensor as a new array, after checking that the view lies inside its storage."""
    base = self.storage.ensure()
    if base is None or base.size != self.storage.numel:
      raise ValueError(f"a storage holds {0 if base is None else base.size} elements, "
                       f"not the {self.storage.numel} its header says (truncated file?)")
    if len(self.size) != len(self.stride) or self.offset < 0 or \
        any(n < 0 for n in self.size) or any(st < 0 for st in self.stride):
      raise ValueError(f"a tensor view (offset {self.offset}, size {self.size}, stride "
                       f"{self.stride}) is malformed")
    if 0 in self.size:
      return np.zeros(self.size, base.dtype)
    count = 1
    for n in self.size:
      count *= n
    if count > base.size:   # a weight is dense; more values than its storage: a crafted view
      raise ValueError(f"a tensor view of size {self.size} has {count} elements, more than "
                       f"its storage's {base.size}")
    last = self.offset + sum((n - 1) * st for n, st in zip(self.size, self.stride))
    if last >= base.size:
      raise ValueError(f"a tensor view (offset {self.offset}, size {self.size}, stride "
                       f"{self.stride}) reaches element {last} of a storage of {base.size}")
    item = base.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        base[self.offset:], shape=self.size, strides=tuple(st * item for st in self.stride))
    return np.array(view)


def _ints(values, what: str) -> Tuple[int, ...]:
  if not isinstance(values, (tuple, list)) or not all(
      isinstance(v, int) and not isinstance(v, bool) for v in values):
    raise pickle.UnpicklingError(f"a tensor's {what} is {values!r}, not a tuple of integers")
  return tuple(values)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *unused):
  """torch._utils._rebuild_tensor_v2, lazily: a view of a storage read later."""
  if not isinstance(storage, _Storage):
    raise pickle.UnpicklingError("a tensor's storage is not a storage record")
  if not isinstance(storage_offset, int) or isinstance(storage_offset, bool):
    raise pickle.UnpicklingError(f"a tensor's storage offset is {storage_offset!r}")
  return _LazyTensor(storage, storage_offset, _ints(size, "size"), _ints(stride, "stride"))


def _rebuild_parameter(data, *unused):
  return data


class _RestrictedUnpickler(pickle._Unpickler):  # pylint: disable=protected-access
  """Rebuilds only OrderedDicts and tensors; refuses every other global.

  Python's own unpickler, not the C one: its memo is a dict, where the C unpickler grows
  an array to the largest memo index a (damaged) pickle names, gigabytes for one opcode;
  the object pickles of weights files are small, so the speed does not matter."""

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
    raise RefusedGlobal(
        f"refusing to load the global {module}.{name}: a weights file may rebuild only "
        "tensors, their storages and ordered dicts")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
      raise pickle.UnpicklingError(f"unsupported persistent id {str(pid)[:80]}")
    storage_type, key, numel = pid[1], str(pid[2]), pid[4]  # pid[3]: device location, unused
    if not isinstance(storage_type, _StorageType):
      raise pickle.UnpicklingError(f"storage {key} has no tensor storage type")
    if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
      raise pickle.UnpicklingError(f"storage {key} has element count {numel!r}")
    view = pid[5] if len(pid) > 5 else None
    if view is not None:
      raise pickle.UnpicklingError("storage views are not supported")
    if key not in self._storages:
      st = _Storage(storage_type.dtype, numel)
      if self._read_storage is not None:   # read when a tensor first needs it
        st.loader = lambda key=key, st=st: self._read_storage(key, st)
      self._storages[key] = st
    return self._storages[key]


def _materialize(obj, name: str = ""):
  """Tensors inside nested dicts, lists and tuples as numpy arrays; a failure names the
  tensor (its key path, e.g. ``conv_in.weight``)."""
  if isinstance(obj, _LazyTensor):
    try:
      return obj.materialize()
    except (ValueError, KeyError, zipfile.BadZipFile, zlib.error, OSError) as e:
      raise ValueError(f"tensor {name or '(top level)'}: {_first_line(e)}") from None
  if isinstance(obj, Mapping):
    return {k: _materialize(v, f"{name}.{k}" if name else str(k)) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialize(v, f"{name}[{i}]") for i, v in enumerate(obj))
  return obj


def read_torch_checkpoint(path: str) -> Any:
  """The object a PyTorch file holds (zip or legacy format), tensors as numpy arrays.

  Raises:
    RefusedGlobal (a pickle.UnpicklingError): the file names a global other than
      the tensor rebuild functions, tensor storages and OrderedDict (one line naming
      the file and the global); nothing it names is imported or called.
    ValueError: not a PyTorch checkpoint, truncated, or malformed (one line naming
      the file).
  """
  try:
    return _read(path)
  except RefusedGlobal as e:
    raise RefusedGlobal(f"{path}: {_first_line(e)}") from None
  except (pickle.UnpicklingError, ValueError, EOFError, KeyError, IndexError, TypeError,
          AttributeError, OSError, RecursionError, struct.error, zipfile.BadZipFile,
          zlib.error) as e:
    raise ValueError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt: "
                     f"{type(e).__name__}: {_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
  text = str(e).strip().splitlines()
  return (text[0] if text else type(e).__name__)[:300]


def _read(path: str) -> Any:
  if zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as zf:
      names = zf.namelist()
      pkl = [n for n in names if n.endswith("data.pkl")]
      if len(pkl) != 1:
        raise ValueError("not a PyTorch zip checkpoint (no unique data.pkl)")
      root = pkl[0][:-len("data.pkl")]
      if f"{root}byteorder" in names and zf.read(f"{root}byteorder").strip() != b"little":
        raise ValueError("big-endian tensors are not supported")

      def read_storage(key, st):
        name = f"{root}data/{key}"
        want = st.numel * st.dtype.itemsize
        have = zf.getinfo(name).file_size   # KeyError: no such entry
        if have != want:   # checked before reading: no zip entry is inflated blindly
          raise ValueError(f"storage {key} holds {have} bytes, not the {want} of its "
                           f"{st.numel} elements")
        return np.frombuffer(zf.read(name), dtype=st.dtype, count=st.numel).copy()

      obj = _RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])), {}, read_storage).load()
      return _materialize(obj)
  with open(path, "rb") as f:
    # Legacy format: magic, protocol, sys_info pickles; the object pickle; the
    # list of storage keys; then per storage an int64 element count + raw bytes.
    safe = lambda: _RestrictedUnpickler(f, {}, None).load()  # noqa: E731
    if safe() != _LEGACY_MAGIC:
      raise ValueError("not a PyTorch checkpoint (bad magic number)")
    safe()  # protocol version
    safe()  # sys_info
    storages: Dict[str, _Storage] = {}
    obj = _RestrictedUnpickler(f, storages, None).load()
    keys = _RestrictedUnpickler(f, {}, None).load()
    if not isinstance(keys, list):
      raise ValueError("the storage list is missing")
    size = os.fstat(f.fileno()).st_size
    for key in keys:
      st = storages[str(key)]
      numel = int(np.frombuffer(f.read(8), "<i8")[0])
      if numel != st.numel:
        raise ValueError(f"storage {key} holds {numel} elements, not {st.numel}")
      if numel * st.dtype.itemsize > size - f.tell():   # checked before reading: no blind
        raise ValueError(f"storage {key} needs {numel * st.dtype.itemsize} bytes; the file "
                         f"has {size - f.tell()} left (truncated file?)")
      raw = f.read(numel * st.dtype.itemsize)
      if len(raw) != numel * st.dtype.itemsize:
        raise ValueError(f"storage {key} ends after {len(raw)} of its "
                         f"{numel * st.dtype.itemsize} bytes")
      st.data = np.frombuffer(raw, dtype=st.dtype).copy()
    return _materialize(obj)


def load_state_dict(path: str) -> Dict[str, np.ndarray]:
  """A state_dict file (name -> tensor) as {name: numpy array}, through the restricted reader."""
  sd = read_torch_checkpoint(path)
  if not isinstance(sd, Mapping):
    raise ValueError(f"{path}: holds a {type(sd).__name__}, not a state_dict (name -> tensor)")
  for name, value in sd.items():
    if not isinstance(name, str) or not isinstance(value, np.ndarray):
      raise ValueError(f"{path}: entry {str(name)[:80]!r} is a {type(value).__name__}, not "
                       "a tensor; a state_dict maps names to tensors")
  return dict(sd)

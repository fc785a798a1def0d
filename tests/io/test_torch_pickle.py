"""diffusion/io/torch_pickle.py: PyTorch checkpoints (zip and legacy) read without torch; a
pickle that would run code, or a tensor view outside its storage, is refused."""

import collections
import io
import os
import pickle
import shutil
import sys
import types
import zipfile

import numpy as np
import pytest

from diffusion.io import torch_pickle
from diffusion.pretrained import diffusers, import_weights
from diffusion.pretrained.network import WeightsError

from tests.pretrained.test_importer import one_line, TINY, tiny_config

# ---- PyTorch checkpoint reading without torch --------------------------------------


class _Storage:
  def __init__(self, key, data):
    self.key, self.data = key, data


class _Tensor:
  def __init__(self, storage, offset, shape, stride):
    self.args = (storage, offset, shape, stride)

  def __reduce_ex__(self, proto):
    storage, offset, shape, stride = self.args
    return (sys.modules["torch._utils"]._rebuild_tensor_v2,
            (storage, offset, shape, stride, False, collections.OrderedDict()))


def _fake_torch(monkeypatch):
  """Just enough of a 'torch' module for pickle to write torch's global names."""
  torch = types.ModuleType("torch")
  utils = types.ModuleType("torch._utils")

  def _rebuild_tensor_v2(*args):  # never called: only its name is pickled
    raise AssertionError

  _rebuild_tensor_v2.__module__ = "torch._utils"
  _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
  utils._rebuild_tensor_v2 = _rebuild_tensor_v2
  float_storage = type("FloatStorage", (), {"__module__": "torch", "__qualname__": "FloatStorage"})
  torch.FloatStorage = float_storage
  torch._utils = utils
  monkeypatch.setitem(sys.modules, "torch", torch)
  monkeypatch.setitem(sys.modules, "torch._utils", utils)
  return float_storage


def _example_tensors():
  base = np.arange(24, dtype=np.float32)
  storage = _Storage("0", base)
  other = _Storage("1", np.linspace(0, 1, 6).astype(np.float32))
  sd = collections.OrderedDict([
      ("a.weight", _Tensor(storage, 0, (2, 3), (3, 1))),           # contiguous
      ("a.bias", _Tensor(storage, 6, (3, 2), (1, 3))),             # transposed view, offset
      ("b.weight", _Tensor(other, 0, (6,), (1,))),
  ])
  want = {"a.weight": base[:6].reshape(2, 3), "a.bias": base[6:12].reshape(2, 3).T,
          "b.weight": other.data}
  return sd, [storage, other], want


def _pickler(buf, float_storage):
  p = pickle.Pickler(buf, protocol=2)
  p.persistent_id = lambda obj: (("storage", float_storage, obj.key, "cpu", obj.data.size)
                                 if isinstance(obj, _Storage) else None)
  return p


def test_reads_torch_zip_and_legacy_checkpoints(tmp_path, monkeypatch):
  float_storage = _fake_torch(monkeypatch)
  sd, storages, want = _example_tensors()
  buf = io.BytesIO()
  _pickler(buf, float_storage).dump(sd)
  zpath = tmp_path / "new.pth"
  with zipfile.ZipFile(zpath, "w") as zf:
    zf.writestr("new/data.pkl", buf.getvalue())
    for st in storages:
      zf.writestr(f"new/data/{st.key}", st.data.tobytes())
  lpath = tmp_path / "legacy.pth"
  with open(lpath, "wb") as f:
    for header in (0x1950a86a20f9469cfc6c, 1001, {"little_endian": True}):
      pickle.dump(header, f, protocol=2)
    _pickler(f, float_storage).dump(sd)
    pickle.dump([st.key for st in storages], f, protocol=2)
    for st in storages:
      f.write(np.int64(st.data.size).tobytes())
      f.write(st.data.tobytes())
  for path in (zpath, lpath):
    got = torch_pickle.read_torch_checkpoint(str(path))
    assert list(got) == list(want)
    for k in want:
      np.testing.assert_array_equal(got[k], want[k])


def test_checkpoint_reader_refuses_code(tmp_path):
  zpath = tmp_path / "evil.pth"
  with zipfile.ZipFile(zpath, "w") as zf:
    zf.writestr("evil/data.pkl", pickle.dumps(os.system, protocol=2))
  with pytest.raises(pickle.UnpicklingError, match="refusing"):
    torch_pickle.read_torch_checkpoint(str(zpath))


# ---- a weights file is untrusted: the restricted unpickler --------------------------------


class _RunsACommand:
  def __init__(self, command):
    self.command = command

  def __reduce__(self):
    return (os.system, (self.command,))


def test_a_pickle_that_would_run_a_command_is_refused_and_never_runs_it(tmp_path):
  marker = tmp_path / "it_ran"
  payload = pickle.dumps(collections.OrderedDict(
      [("conv_in.weight", _RunsACommand(f"touch {marker}"))]), protocol=2)
  zipped = tmp_path / "zip" / diffusers.PICKLE_NAME
  zipped.parent.mkdir()
  with zipfile.ZipFile(zipped, "w") as zf:
    zf.writestr("archive/data.pkl", payload)
  legacy = tmp_path / "legacy.bin"
  legacy.write_bytes(payload)
  for path in (zipped, legacy):
    with pytest.raises(torch_pickle.RefusedGlobal) as e:
      torch_pickle.read_torch_checkpoint(str(path))
    text = one_line(e)
    assert text.startswith(str(path)) and f"the global {os.system.__module__}.system" in text
  # Through the importer, as a diffusers folder: the same one line.
  shutil.copy(os.path.join(TINY, "config.json"), zipped.parent)
  with pytest.raises(WeightsError, match="refusing to load the global") as e:
    import_weights(str(zipped.parent), str(tmp_path / "run"), config=tiny_config())
  one_line(e)
  assert not marker.exists() and not (tmp_path / "run").exists()
  os.system(f"touch {marker}")   # the check can see the file when the command runs
  assert marker.exists()


class _View:
  """Pickles as torch's _rebuild_tensor_v2(storage, offset, size, stride, ...)."""

  def __init__(self, rebuild, storage, size, stride):
    self.rebuild, self.storage, self.size, self.stride = rebuild, storage, size, stride

  def __reduce__(self):
    return (self.rebuild, (self.storage, 0, self.size, self.stride, False,
                           collections.OrderedDict()))


def test_a_tensor_view_outside_its_storage_is_refused(tmp_path, monkeypatch):
  """A crafted size/stride would make numpy read memory past the storage's bytes."""
  torch = types.ModuleType("torch")
  utils = types.ModuleType("torch._utils")

  def _rebuild_tensor_v2(*args):   # never called: only its name is pickled
    raise AssertionError

  _rebuild_tensor_v2.__module__ = "torch._utils"
  _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
  utils._rebuild_tensor_v2 = _rebuild_tensor_v2
  float_storage = type("FloatStorage", (), {"__module__": "torch", "__qualname__": "FloatStorage"})
  torch.FloatStorage, torch._utils = float_storage, utils
  monkeypatch.setitem(sys.modules, "torch", torch)
  monkeypatch.setitem(sys.modules, "torch._utils", utils)
  storage = object()
  buf = io.BytesIO()
  p = pickle.Pickler(buf, protocol=2)
  p.persistent_id = lambda o: ("storage", float_storage, "0", "cpu", 16) if o is storage \
      else None
  p.dump(collections.OrderedDict([("ok", _View(_rebuild_tensor_v2, storage, (4, 4), (4, 1))),
                                  ("w", _View(_rebuild_tensor_v2, storage, (4, 4), (4, 1000)))]))
  path = tmp_path / "view.bin"
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("archive/data.pkl", buf.getvalue())
    zf.writestr("archive/data/0", np.arange(16, dtype=np.float32).tobytes())
  with pytest.raises(ValueError, match=r"tensor w: a tensor view .* reaches element 3012 "
                     r"of a storage of 16") as e:
    torch_pickle.read_torch_checkpoint(str(path))
  one_line(e)

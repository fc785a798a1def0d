"""python -m diffusion.evals.inception_convert: a pytorch-fid .pth to the npz the FID
evaluator loads, refused unless it is the released file (or --any_weights)."""

import collections
import io
import zipfile

import numpy as np

from diffusion.evals import inception, inception_convert

from tests.evals.test_inception import _random_state_dict
from tests.io.test_torch_pickle import _fake_torch, _pickler, _Storage, _Tensor
from tests.test_cli import command, one_error


def test_inception_convert_command_line(tmp_path):
  assert one_error(command("diffusion.evals.inception_convert", "a.pth")) == (
      "error: give SRC.pth and DST.npz (1 argument(s) given). usage: python -m "
      "diffusion.evals.inception_convert SRC.pth DST.npz [--any_weights]")
  src, dst = tmp_path / "nothing.pth", tmp_path / "out.npz"
  line = one_error(command("diffusion.evals.inception_convert", str(src), str(dst),
                           "--any_weights"), status=1)
  assert line.startswith(f"error: cannot convert {str(src)!r}: ") and not dst.exists()


def test_convert_cli_end_to_end(tmp_path, monkeypatch):
  """A full-size random pytorch-fid-like .pth (zip format) -> npz -> load_inception."""
  sd = _random_state_dict(np.random.default_rng(9))
  src, dst = tmp_path / "pt_inception.pth", tmp_path / "inception_fid.npz"
  with monkeypatch.context() as m:
    float_storage = _fake_torch(m)
    storages, tensors = [], collections.OrderedDict()
    for i, (name, a) in enumerate(sd.items()):
      if a.dtype != np.float32:
        continue  # num_batches_tracked (int64) is dropped by the converter anyway
      st = _Storage(str(i), np.ascontiguousarray(a).ravel())
      storages.append(st)
      strides = tuple(s // 4 for s in np.ascontiguousarray(a).strides)
      tensors[name] = _Tensor(st, 0, a.shape, strides)
    buf = io.BytesIO()
    _pickler(buf, float_storage).dump(tensors)
    with zipfile.ZipFile(src, "w") as zf:
      zf.writestr("archive/data.pkl", buf.getvalue())
      for st in storages:
        zf.writestr(f"archive/data/{st.key}", st.data.tobytes())
  # Not the released file: refused by its SHA-256, converted with --any_weights.
  assert not inception_convert.sha256(str(src)).startswith(
      inception_convert.EXPECTED_SHA256_PREFIX)
  command = "python -m diffusion.evals.inception_convert"   # argv[0] of the command
  assert inception_convert.main([command, str(src), str(dst)]) == 1 and not dst.exists()
  assert inception_convert.main([command, str(src), str(dst)], any_weights=True) == 0
  v = inception.load_inception(str(dst)).variables
  np.testing.assert_array_equal(np.asarray(v["params"]["Mixed_7b"]["branch3x3_2a"]["conv"]["kernel"]),
                                sd["Mixed_7b.branch3x3_2a.conv.weight"].transpose(2, 3, 1, 0))
  assert inception_convert.main([command, str(tmp_path / "missing.pth"), str(dst)]) == 1

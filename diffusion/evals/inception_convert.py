"""Converter of pytorch-fid's Inception weights (a PyTorch checkpoint) to the .npz we read.

  python -m diffusion.evals.inception_convert pt_inception-2015-12-05-6726825d.pth inception_fid.npz

The source must be pytorch-fid's release file, the weights every FID in the papers'
tables was computed with (through TF's inception-2015-12-05): its SHA-256 must start
with 6726825d, the hash its file name carries (the torch.hub convention, which
``torch.hub`` checks the same way). ``--any_weights`` converts another file anyway
(its FIDs are then not comparable with published ones).

The file is read by :mod:`diffusion.io.torch_pickle` (no torch needed): a
restricted unpickler that only rebuilds tensors and never imports or runs code
from the file. The result is checked against the network's shapes
(:mod:`diffusion.evals.inception`).
"""

import hashlib
import pickle
import zipfile
from typing import Any, Dict, Mapping, Sequence

import numpy as np
from absl import flags

from diffusion import cli
from diffusion.evals.inception import load_variables
from diffusion.io.torch_pickle import load_state_dict


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


USAGE = "usage: python -m diffusion.evals.inception_convert SRC.pth DST.npz [--any_weights]"


def main(argv: Sequence[str], any_weights: bool = False) -> int:
  """The command (``argv``: the program, SRC, DST): 0 written, 1 not convertible, 2 a bad
  command line; errors are one line."""
  if len(argv) != 3:
    cli.error(f"give SRC.pth and DST.npz ({len(argv) - 1} argument(s) given). {USAGE}")
    return 2
  src, dst = argv[1:]
  try:
    arrays = convert(src, dst, any_weights=any_weights)
  except (OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
    cli.error(f"cannot convert {src!r}: {e}")
    return 1
  n = sum(a.size for a in arrays.values())
  print(f"wrote {dst}: {len(arrays)} arrays, {n:,} numbers")
  return 0


if __name__ == "__main__":
  # The flag exists only in the command: importing this module defines none.
  _ANY_WEIGHTS = flags.DEFINE_bool("any_weights", False, "Convert a file that is not "
                                   "pytorch-fid's release (its FIDs are then not comparable "
                                   "with published ones).")
  cli.run(lambda argv: main(argv, any_weights=_ANY_WEIGHTS.value))

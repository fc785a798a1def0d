"""Post-hoc EMA snapshots on disk: ``<workdir>/phema/phema_<step>.npz``.

A run with ``training.phema_std_rel`` (Karras et al. 2024, EDM2, §3) writes, every
``training.phema_every`` steps, the parameters of each of its power-function EMA profiles
at that step into one file:

  step       int64 scalar: the optimizer steps applied (t >= 1)
  std_rel    float64 [n]: each profile's σ_rel, in the order of the config's tuple
  <i><path>  profile i's parameter leaf at tree path <path> (``jax.tree_util.keystr``),
             float32 as trained

Each file is written atomically (:mod:`diffusion.io.atomic`: a reader or kill -9 never
sees half a file). They live beside ``checkpoints/``, so orbax's ``keep_checkpoints``
never removes them; ``training.phema_keep`` does (:func:`prune`). Snapshots of steps that
a resumed run trains again are set aside in ``phema/retrained_from_<step>/``, never
deleted (:func:`set_aside_after`). Reading needs only the parameters' shapes (a target
tree), no optimizer.
"""

import os
import re
from typing import Any, Iterator, List, Sequence, Tuple

import jax
import numpy as np

from diffusion.errors import ConfigError
from diffusion.io import atomic

FOLDER = "phema"
_NAME = re.compile(r"^phema_(\d+)\.npz$")


def snapshot_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), FOLDER)


def snapshot_path(workdir: str, step: int) -> str:
  return os.path.join(snapshot_dir(workdir), f"phema_{step:08d}.npz")


def _leaves(tree: Any) -> List[Tuple[str, Any]]:
  """(path name, leaf) of every leaf of a parameter tree, in tree order."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return [(jax.tree_util.keystr(path), leaf) for path, leaf in flat]


def write(workdir: str, step: int, std_rel: Sequence[float], profiles: Sequence[Any]) -> str:
  """Writes the profiles' parameter trees (host or device arrays, one per σ_rel) as the
  snapshot of ``step``, atomically (replacing one of that step); returns its path."""
  if len(std_rel) != len(profiles):
    raise ValueError(f"{len(profiles)} profiles but {len(std_rel)} σ_rel values.")
  arrays = {"step": np.asarray(step, np.int64), "std_rel": np.asarray(std_rel, np.float64)}
  for i, tree in enumerate(profiles):
    arrays.update({f"{i}{name}": np.asarray(leaf) for name, leaf in _leaves(tree)})
  os.makedirs(snapshot_dir(workdir), exist_ok=True)
  path = snapshot_path(workdir, step)
  atomic.write_npz(path, **arrays)
  return path


def list_snapshots(workdir: str) -> List[Tuple[int, str]]:
  """(step, path) of every snapshot in ``<workdir>/phema``, ascending by step."""
  folder = snapshot_dir(workdir)
  if not os.path.isdir(folder):
    return []
  found = [(int(m.group(1)), os.path.join(folder, name))
           for name in os.listdir(folder) if (m := _NAME.match(name))]
  return sorted(found)


def read_header(path: str) -> Tuple[int, Tuple[float, ...]]:
  """(step, σ_rel of each profile) of a snapshot file; ConfigError if it is unreadable."""
  try:
    with np.load(path) as f:
      return int(f["step"]), tuple(float(s) for s in f["std_rel"])
  except Exception as e:  # noqa: BLE001 - a truncated or foreign file raises many types
    raise ConfigError(f"post-hoc EMA snapshot {path} is unreadable ({type(e).__name__}); "
                      "move it out of the folder (the others still reconstruct).") from None


def read_profiles(path: str, target: Any) -> Iterator[Tuple[float, Any]]:
  """(σ_rel, parameter tree shaped like ``target``) of each profile of a snapshot, one at
  a time (numpy arrays in the stored dtype); ConfigError naming the file when it does not
  hold ``target``'s arrays (another config)."""
  _, stds = read_header(path)
  names = _leaves(target)
  treedef = jax.tree.structure(target)
  with np.load(path) as f:
    for i, std in enumerate(stds):
      leaves = []
      for name, leaf in names:
        key = f"{i}{name}"
        if key not in f.files or tuple(f[key].shape) != tuple(leaf.shape):
          raise ConfigError(f"post-hoc EMA snapshot {path} does not match this config "
                            f"(array {name}); reconstruct with the config that wrote it.")
        leaves.append(f[key])
      yield std, jax.tree.unflatten(treedef, leaves)


def prune(workdir: str, keep: int) -> List[str]:
  """Removes all but the ``keep`` newest snapshots (``keep`` 0: keeps all); returns the
  paths removed."""
  if keep <= 0:
    return []
  old = [path for _, path in list_snapshots(workdir)][:-keep]
  for path in old:
    os.remove(path)
  return old


def set_aside_after(workdir: str, step: int) -> List[str]:
  """Moves the snapshots of steps after ``step`` (the step a run resumes from: it trains
  them again and writes them anew) into ``phema/retrained_from_<step>[.N]/``, and removes
  temporary files a killed writer left; returns the paths moved."""
  folder = snapshot_dir(workdir)
  if not os.path.isdir(folder):
    return []
  for name in os.listdir(folder):
    if name.startswith(".phema_") and name.endswith(".tmp"):   # atomic.write_with's
      os.remove(os.path.join(folder, name))
  later = [path for s, path in list_snapshots(workdir) if s > step]
  if not later:
    return []
  aside, n = os.path.join(folder, f"retrained_from_{step}"), 1
  while os.path.exists(aside):
    aside, n = os.path.join(folder, f"retrained_from_{step}.{n}"), n + 1
  os.makedirs(aside)
  for path in later:
    os.replace(path, os.path.join(aside, os.path.basename(path)))
  return later

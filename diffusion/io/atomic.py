"""The one atomic write: a temporary file in the same folder, flushed, then renamed.

A reader (or a crash) never sees half a file: either the old content or the new.
Every writer of the project (config.json, ledgers, results, caches) goes through here.
"""

import json
import os
import tempfile
from typing import IO, Any, Callable

import numpy as np


def write_with(path: str, write: Callable[[IO], None], binary: bool = False,
               suffix: str = "") -> None:
  """Calls ``write(f)`` on a temporary file beside ``path``, then renames it to ``path``.

  ``suffix`` is the temporary file's ending (``np.savez`` appends ``.npz`` to names
  without it). On any error the temporary file is removed and ``path`` is unchanged.
  """
  folder = os.path.dirname(os.path.abspath(path))
  # .NAME.partial-<pid>.<random>.tmp: what a killed writer leaves is told by its pid and
  # removed by the next command (diffusion.io.temporaries).
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.partial-{os.getpid()}.",
                             suffix=suffix + ".tmp", dir=folder)
  umask = os.umask(0)
  os.umask(umask)
  try:
    os.chmod(tmp, 0o666 & ~umask)   # mkstemp makes 0600; give the file open()'s usual mode
    with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_text(path: str, text: str) -> None:
  """``path`` holds ``text`` (UTF-8), atomically."""
  write_with(path, lambda f: f.write(text))


def write_json(path: str, obj: Any, indent: int = 2) -> None:
  """``path`` holds ``obj`` as JSON (numbers that are numpy scalars as floats), atomically."""
  write_text(path, json.dumps(obj, indent=indent, default=float))


def write_npz(path: str, **arrays) -> None:
  """``path`` (ending in .npz) holds ``arrays`` (np.savez to an open file), atomically."""
  write_with(path, lambda f: np.savez(f, **arrays), binary=True)

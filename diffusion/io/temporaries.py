"""Temporaries named by the process that makes them, and removed once it is gone.

A command killed with ``kill -9`` (or by the machine) cannot clean up after itself, so
every temporary the project makes carries its maker's pid, and the next command that
would make one removes those whose process no longer runs (the rule the data
preparation applies to its ``tmp_downloads_*`` folders, made safe for two commands at
once: a temporary of a live process is never touched):

  .NAME.partial-<pid>              a folder that becomes NAME when complete (pretrained
                                   import and export: :func:`partial_path`)
  .NAME.partial-<pid>.<random>.tmp atomic.write_with's file that replaces NAME
  FOLDER/.incomplete-<pid>         an output folder of sample.py while it is written
                                   (:func:`mark_incomplete`); its first line says whether
                                   that process made FOLDER

orbax's ``<step>.orbax-checkpoint-tmp-*`` folders are removed by orbax itself when the
next writer of the workdir (which holds its lock) opens its checkpoints.
A pid is this machine's: a folder shared by several machines keeps what a process of
another machine left until a command on that machine runs.
"""

import os
import re
import shutil
from typing import List, Optional, Sequence

PARTIAL = re.compile(r"^\.(?P<name>.+?)\.partial-(?P<pid>\d+)(?:\..+\.tmp)?$")
INCOMPLETE = ".incomplete-"


def alive(pid: int) -> bool:
  """Whether process ``pid`` runs on this machine (this one included)."""
  if pid == os.getpid():
    return True
  if pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except (PermissionError, OverflowError, ValueError):
    return True     # another user's process, or a number we cannot ask about: keep it
  return True


def partial_path(target: str) -> str:
  """``.NAME.partial-<pid>`` beside ``target`` (its parent folder, absolute)."""
  target = os.path.abspath(target)
  return os.path.join(os.path.dirname(target),
                      f".{os.path.basename(target)}.partial-{os.getpid()}")


def remove_stale(folder: str, names: Optional[Sequence[str]] = None) -> List[str]:
  """Removes the ``.NAME.partial-<pid>`` folders and files in ``folder`` whose process is
  gone (only those of ``names`` when given); returns what was removed."""
  removed = []
  try:
    entries = os.listdir(folder)
  except OSError:
    return removed
  for entry in entries:
    m = PARTIAL.match(entry)
    if m is None or (names is not None and m.group("name") not in names):
      continue
    if alive(int(m.group("pid"))):
      continue
    path = os.path.join(folder, entry)
    _remove(path)
    removed.append(path)
  return removed


def _remove(path: str) -> None:
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path, ignore_errors=True)
  else:
    try:
      os.remove(path)
    except OSError:
      pass


def mark_incomplete(folder: str, created: bool) -> str:
  """Writes ``folder/.incomplete-<pid>`` (first line: ``created`` or ``existed``: whether
  this process made ``folder``); returns its path. Remove it with :func:`unmark` when
  the folder is complete."""
  path = os.path.join(folder, f"{INCOMPLETE}{os.getpid()}")
  with open(path, "w", encoding="utf-8") as f:
    f.write("created\n" if created else "existed\n")
  return path


def unmark(folder: str) -> None:
  """Removes this process's ``.incomplete-<pid>`` marker from ``folder`` (if any)."""
  try:
    os.remove(os.path.join(folder, f"{INCOMPLETE}{os.getpid()}"))
  except OSError:
    pass


def remove_incomplete(folder: str, partial_files: Sequence[str],
                      complete_file: str) -> Optional[str]:
  """What a dead process left in ``folder`` (one marked by :func:`mark_incomplete` whose
  pid is gone): while ``complete_file`` is absent its output is partial, so the folder
  goes when that process made it, else only its ``partial_files``; with ``complete_file``
  only the marker goes. Returns what was removed (the folder or the marker), or None."""
  try:
    markers = [e for e in os.listdir(folder) if e.startswith(INCOMPLETE)]
  except OSError:
    return None
  pids = {m: m[len(INCOMPLETE):] for m in markers}
  dead = [m for m, pid in pids.items() if pid.isdigit() and not alive(int(pid))]
  in_use = len(dead) < len(markers)     # a live process writes here too: keep its folder
  removed = None
  for marker in dead:
    path = os.path.join(folder, marker)
    try:
      with open(path, encoding="utf-8") as f:
        created = f.readline().strip() == "created"
    except OSError:
      created = False
    if not os.path.exists(os.path.join(folder, complete_file)):
      if created and not in_use:
        shutil.rmtree(folder, ignore_errors=True)
        return folder
      for name in partial_files:
        _remove(os.path.join(folder, name))
    _remove(path)
    removed = path
  return removed

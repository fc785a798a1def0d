"""The ledger of a sweep, ``<DIR>/sweep.json``: every point's state, written atomically.

  {"config": "configs/ddpm/digits.py", "sweep": "lr_ema", "common_overrides": {...},
   "points": [{"name": "lr=0.0001_ema_decay=0.999", "overrides": {...},
               "status": "pending" | "running" | "done" | "stopped" | "failed",
               "error": "<one line>" | null, "workdir": "<DIR>/<name>",
               "final": {...}, "best": {...}}, ...]}

Running the same command again skips done points, resumes a running (interrupted) one
from its checkpoint, and retries failed ones only when asked. A definition that changed
under an existing DIR is refused, saying what changed; added points are appended.

A search (``train.py --search``) keeps the same file with ``"kind": "search"``, its
definition (space, searcher, scheduler, metric, ...) and one entry per trial, with the
fields of :data:`TRIAL_FIELDS` besides those above; ``stopped`` is a trial its scheduler
stopped early (ASHA). Several processes on one machine may share a search: each update is
then a read-modify-write under ``DIR/sweep.json.lock`` (:meth:`Ledger.locked`).
"""

import contextlib
import fcntl
import json
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence

from diffusion.io import atomic
from diffusion.io.metric_writers import read_metrics
from diffusion.errors import ConfigError

STATUSES = ("pending", "running", "done", "stopped", "failed")
# A search's trial entry, besides name, overrides, status, error, workdir, final and best:
TRIAL_FIELDS = {
    "trial": "the Optuna trial number (None for a seed replica)",
    "config_id": "the configuration it trains: its own name, or the trial it repeats",
    "seed": "its training.seed",
    "steps": "steps trained",
    "rungs": "[{rung, step, at_step, value}]: the metric where it reached each rung",
    "metric": "the metric at its last report",
    "best_metric": "the best value of the metric it reported",
    "stopped": "{rung, step, at_step, value, by}: what stopped it early, or None",
    "owner": "{pid, host} of the process training it, or None",
}
# What defines a search: a folder reused with another value of one of these is refused.
SEARCH_DEFINITION = ("space", "searcher", "scheduler", "metric", "metric_mode", "seed",
                     "asha_min_steps", "asha_reduction", "seeds", "seeds_top")


def _plain(value: Any) -> Any:
  """JSON's view of a value (tuples become lists), for comparisons with a stored ledger."""
  return json.loads(json.dumps(value))


class Ledger:
  """``<DIR>/sweep.json``. Only the process holding DIR's lock writes it."""

  def __init__(self, sweep_dir: str, data: Dict[str, Any], read_only: bool = False,
               shared: bool = False):
    self.path = os.path.join(sweep_dir, "sweep.json")
    self.dir = sweep_dir
    self.data = data
    self.read_only = read_only   # the other processes of a multi-host sweep
    self.shared = shared         # a search several processes may run (see locked)
    self._lock_depth = 0

  @classmethod
  def open(cls, sweep_dir: str, config_file: str, spec: str, common: Dict[str, Any],
           names: Sequence[str], points: Sequence[Dict[str, Any]]) -> "Ledger":
    """The ledger of DIR for this definition, created or checked against the stored one."""
    path = os.path.join(sweep_dir, "sweep.json")
    fresh = [{"name": n, "overrides": _plain(p), "status": "pending", "error": None,
              "workdir": os.path.join(sweep_dir, n), "final": {}, "best": {}}
             for n, p in zip(names, points)]
    if not os.path.exists(path):
      ledger = cls(sweep_dir, {"config": config_file, "sweep": spec,
                               "common_overrides": _plain(common), "points": fresh})
      ledger.save()
      return ledger
    data = _load(path)
    if data.get("kind") == "search":
      raise ConfigError(f"{sweep_dir} holds a search ({data.get('sweep')!r}), not a grid; use "
                        "another --workdir, or run it again with --search.")
    changes = []
    if os.path.normpath(data.get("config", "")) != os.path.normpath(config_file):
      changes.append(f"the config file was {data.get('config')!r}, now {config_file!r}")
    if data.get("common_overrides") != _plain(common):
      changes.append(f"the --config.* overrides were {data.get('common_overrides')}, now "
                     f"{_plain(common)}")
    new = {p["name"]: p for p in fresh}
    for old in data["points"]:
      if old["name"] not in new:
        changes.append(f"point {old['name']!r} is gone")
      elif new[old["name"]]["overrides"] != old["overrides"]:
        changes.append(f"point {old['name']!r} changed from {old['overrides']} to "
                       f"{new[old['name']]['overrides']}")
    if changes:
      raise ConfigError(f"the sweep in {sweep_dir} was defined differently: "
                        f"{'; '.join(changes[:3])}; use another --workdir, or move "
                        f"{path} away to start over.")
    known = {p["name"] for p in data["points"]}
    data["points"] += [p for p in fresh if p["name"] not in known]   # added points
    data["sweep"] = spec
    ledger = cls(sweep_dir, data)
    ledger.save()
    return ledger

  @classmethod
  def open_search(cls, sweep_dir: str, config_file: str, spec: str, common: Dict[str, Any],
                  definition: Dict[str, Any]) -> "Ledger":
    """The ledger of the search in DIR: created, or checked against the stored one (a
    folder of a grid, or of a search defined otherwise, is refused with what changed).
    Shared: several processes may run the search (:meth:`locked`)."""
    path = os.path.join(sweep_dir, "sweep.json")
    definition = _plain(definition)
    ledger = cls(sweep_dir, {}, shared=True)
    with ledger.locked():
      if not os.path.exists(path):
        ledger.data = {"kind": "search", "config": config_file, "sweep": spec,
                       "common_overrides": _plain(common), "definition": definition,
                       "points": []}
        ledger.save()
        return ledger
      data = _load(path)
      if data.get("kind") != "search":
        raise ConfigError(f"{sweep_dir} holds a grid sweep ({data.get('sweep')!r}), not a "
                          "search; use another --workdir for the search.")
      changes = []
      if os.path.normpath(data.get("config", "")) != os.path.normpath(config_file):
        changes.append(f"the config file was {data.get('config')!r}, now {config_file!r}")
      if data.get("common_overrides") != _plain(common):
        changes.append(f"the --config.* overrides were {data.get('common_overrides')}, now "
                       f"{_plain(common)}")
      old = data.get("definition", {})
      for key in SEARCH_DEFINITION:
        if old.get(key) != definition.get(key):
          changes.append(f"the {key} was {old.get(key)!r}, now {definition.get(key)!r}")
      if changes:
        raise ConfigError(f"the search in {sweep_dir} was defined differently: "
                          f"{'; '.join(changes[:3])}; use another --workdir, or move "
                          f"{path} away to start over.")
      data["definition"] = definition   # --trials may grow or shrink
      data["sweep"] = spec
      ledger.data = data
      ledger.save()
    return ledger

  @property
  def points(self) -> List[Dict[str, Any]]:
    return self.data["points"]

  def point(self, name: str) -> Dict[str, Any]:
    return next(p for p in self.points if p["name"] == name)

  def set(self, name: str, status: str, error: Optional[str] = None, **fields) -> None:
    """Updates one point and rewrites the file (atomic rename)."""
    assert status in STATUSES, status
    with self.locked():
      p = self.point(name)
      p.update(status=status, error=error, **fields)
      self.save()

  def add(self, entry: Dict[str, Any]) -> None:
    """Appends a point (a search's new trial) and rewrites the file."""
    assert entry["status"] in STATUSES, entry
    with self.locked():
      if any(p["name"] == entry["name"] for p in self.points):
        raise ValueError(f"the ledger already holds {entry['name']!r}")
      self.points.append(_plain(entry))
      self.save()

  @contextlib.contextmanager
  def locked(self) -> Iterator["Ledger"]:
    """A shared ledger: the block holds ``sweep.json.lock`` (an OS lock, released when the
    process ends however it ends) and starts from the file's current content, so updates of
    several processes do not overwrite each other. Re-entrant; a no-op when not shared."""
    if not self.shared or self._lock_depth:
      self._lock_depth += 1
      try:
        yield self
      finally:
        self._lock_depth -= 1
      return
    fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX)
      self._lock_depth = 1
      if os.path.exists(self.path):
        self.data = _load(self.path)
      yield self
    finally:
      self._lock_depth = 0
      fcntl.flock(fd, fcntl.LOCK_UN)
      os.close(fd)

  def save(self) -> None:
    if self.read_only:
      return
    atomic.write_json(self.path, self.data)


def _load(path: str) -> Dict[str, Any]:
  """A ledger file's data; ConfigError naming the file when it is unreadable or is JSON
  of another shape."""
  fix = "move it away to start the sweep afresh (its points' workdirs resume)."
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(f"{path} is not a readable ledger ({e}); {fix}") from None
  points = data.get("points") if isinstance(data, dict) else None
  ok = (isinstance(points, list) and isinstance(data.get("config", ""), str) and
        isinstance(data.get("common_overrides", {}), dict) and
        all(isinstance(p, dict) and isinstance(p.get("name"), str) and
            isinstance(p.get("workdir"), str) and isinstance(p.get("overrides"), dict) and
            p.get("status") in STATUSES for p in points))
  if not ok:
    raise ConfigError(f"{path} is JSON but not a sweep ledger (it needs \"config\" and a "
                      f"list of \"points\" with name, workdir, overrides, status); {fix}")
  return data


def read_ledger(sweep_dir: str) -> Dict[str, Any]:
  """The stored ledger of a sweep folder (ConfigError if there is none or it is damaged)."""
  path = os.path.join(sweep_dir, "sweep.json")
  if not os.path.isfile(path):
    raise ConfigError(f"{sweep_dir} has no sweep.json; point at a sweep's --workdir.")
  return _load(path)


def missing_result(point: Dict[str, Any]) -> Optional[str]:
  """Why a point marked done has no result on disk (its folder or its metrics are gone
  or unreadable), or None when it is intact."""
  workdir = point["workdir"]
  if not os.path.isdir(workdir):
    return f"its folder {workdir} is missing"
  try:
    if any("loss" in row for row in read_metrics(workdir)):
      return None
  except OSError:
    pass
  return f"its metrics {os.path.join(workdir, 'metrics.jsonl')} are missing or unreadable"

"""Sweep definitions: lists of override dicts, composed with sweep / product / zip / chain.

A point of a sweep is a dict of dotted config paths to values, the same paths as
``--config.x=y`` (``{"optim.lr": 1e-4, "training.seed": 0}``). A config file may define
``sweep_<name>()`` functions beside ``get_config()``, returning a list (or generator)
of such dicts, in the spelling JAX researchers know from big_vision / XManager:

  def sweep_lr_ema():
    return product(sweep("optim.lr", [1e-4, 2e-4, 4e-4]),
                   sweep("training.ema_decay", [0.999, 0.9999]))

On the command line ``--sweep="optim.lr=1e-4,2e-4;training.seed=0,1"`` is the
product of its axes. Point names are derived from the overrides: readable
(``lr=0.0001_seed=0``), stable (a function of the overrides alone) and safe as
folder names.

A point's config is :func:`point_config`: the overrides applied, and, for a point
too short for its ``training.log_every`` to draw a loss curve, a smaller
``log_every`` (:func:`short_run_log_every`); what the point trains is unchanged.
"""

import ast
import math
import builtins
import hashlib
import itertools
import re
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import ml_collections

from diffusion.config import files
from diffusion.errors import ConfigError, did_you_mean

Point = Dict[str, Any]

MAX_NAME = 100   # characters; longer names are shortened with a hash of the overrides
# Rows of metrics.jsonl a sweep point logs at least, where training.steps_per_call allows:
# a loss curve of two points (a 200-step point logging every 100) shows no shape.
MIN_LOG_ROWS = 10
LOG_EVERY = "training.log_every"


def sweep(key: str, values: Iterable) -> List[Point]:
  """One axis: ``[{key: v} for v in values]``."""
  return [{key: v} for v in values]


def product(*axes: Iterable[Point]) -> List[Point]:
  """Every combination of one point from each axis (the first axis varies slowest)."""
  out = []
  for combo in itertools.product(*[list(a) for a in axes]):
    merged: Point = {}
    for part in combo:
      _merge_into(merged, part)
    out.append(merged)
  return out


def zip(*axes: Iterable[Point]) -> List[Point]:  # pylint: disable=redefined-builtin
  """Points merged position by position; the axes must have equal lengths."""
  lists = [list(a) for a in axes]
  if len({len(l) for l in lists}) > 1:
    raise ConfigError(f"sweeps.zip needs axes of equal length; got {[len(l) for l in lists]}.")
  out = []
  for parts in builtins.zip(*lists):
    merged: Point = {}
    for part in parts:
      _merge_into(merged, part)
    out.append(merged)
  return out


def chain(*sweeps: Iterable[Point]) -> List[Point]:
  """The points of several sweeps one after another."""
  return [dict(p) for s in sweeps for p in s]


def _merge_into(merged: Point, part: Point) -> None:
  for k, v in part.items():
    if k in merged and merged[k] != v:
      raise ConfigError(f"a sweep point sets {k} twice ({merged[k]!r} and {v!r}).")
    merged[k] = v


def parse_value(text: str):
  """A command-line value: a Python literal (1e-4, 3, True, (1, 2)) or else a string."""
  if text.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
    return float(text)   # a number, so that checks can say it is not finite
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def parse_grid(text: str) -> List[Point]:
  """``"a.b=1,2;c.d=x,y"`` -> the product of its axes (values split on top-level commas)."""
  axes = []
  for part in filter(None, (p.strip() for p in text.split(";"))):
    if "=" not in part:
      raise ConfigError(f"--sweep={text!r}: {part!r} is not key=v1,v2,...; write e.g. "
                        "--sweep=\"optim.lr=1e-4,2e-4;training.seed=0,1\".")
    key, values = (s.strip() for s in part.split("=", 1))
    split = _split_top_level(values)
    if not key or not split or not all(split):
      raise ConfigError(f"--sweep={text!r}: {part!r} has an empty key or value; write e.g. "
                        "--sweep=\"optim.lr=1e-4,2e-4;training.seed=0,1\".")
    parsed = [parse_value(v) for v in split]
    for v, p in builtins.zip(split, parsed):
      if isinstance(p, float) and not math.isfinite(p):
        raise ConfigError(f"--sweep={text!r}: {key}={v} is not a finite number; give "
                          "finite values.")
    axes.append(sweep(key, parsed))
  if not axes:
    raise ConfigError(f"--sweep={text!r} names no axis.")
  return product(*axes)


def _split_top_level(text: str) -> List[str]:
  """Splits on commas outside brackets, so tuples like (1,2) stay one value."""
  out, depth, cur = [], 0, ""
  for ch in text:
    depth += ch in "([{"
    depth -= ch in ")]}"
    if ch == "," and depth == 0:
      out.append(cur.strip())
      cur = ""
    else:
      cur += ch
  out.append(cur.strip())
  return out


def load_sweep(config_file: str, spec: str) -> List[Point]:
  """The points of ``--sweep=spec``: a ``sweep_<spec>()`` of the config file, or a grid."""
  if "=" in spec:
    return parse_grid(spec)
  module = files.load_module(config_file)
  names = sorted(n[len("sweep_"):] for n in dir(module) if n.startswith("sweep_"))
  if spec not in names:
    listed = ", ".join(names) or "none"
    raise ConfigError(f"--sweep={spec}: {config_file} defines no sweep_{spec}()"
                      f"{did_you_mean(spec, names)}; it defines: {listed}. A grid is "
                      "written key=v1,v2;key2=...")
  points = [dict(p) for p in getattr(module, f"sweep_{spec}")()]
  if not points:
    raise ConfigError(f"--sweep={spec}: sweep_{spec}() returned no points.")
  return points


def apply_overrides(config: ml_collections.ConfigDict, point: Point) -> ml_collections.ConfigDict:
  """A copy of ``config`` with the point's dotted overrides (one-line error naming a bad key)."""
  return files.apply_overrides(config, point, label="sweep key")


def logged_rows(num_train_steps: int, log_every: int) -> int:
  """Rows a run of ``num_train_steps`` writes to metrics.jsonl: one at every multiple of
  ``log_every`` and one at the last step (``train.loop.itstime``)."""
  return num_train_steps // log_every + (1 if num_train_steps % log_every else 0)


def short_run_log_every(num_train_steps: int, log_every: int, steps_per_call: int,
                        min_rows: int = MIN_LOG_ROWS) -> int:
  """``log_every`` (steps) for a run of ``num_train_steps`` steps to log at least
  ``min_rows`` rows, a multiple of ``steps_per_call`` (the loop logs between compiled
  calls); ``log_every`` itself where it already does, never larger. A run of fewer than
  ``min_rows`` calls logs after every call: it cannot log more often."""
  if logged_rows(num_train_steps, log_every) >= min_rows:
    return log_every
  every = max(steps_per_call, num_train_steps // min_rows // steps_per_call * steps_per_call)
  return min(every, log_every)


def sets_log_every(overrides: Point) -> bool:
  """Whether ``overrides`` choose training.log_every (as a dotted key or in a section)."""
  if LOG_EVERY in overrides:
    return True
  training = overrides.get("training")
  return isinstance(training, (dict, ml_collections.ConfigDict)) and "log_every" in training


def point_config(config: ml_collections.ConfigDict, point: Point,
                 fixed: Optional[Point] = None) -> ml_collections.ConfigDict:
  """The config a sweep point trains: ``apply_overrides(config, point)``, logging often
  enough that its loss curve has :data:`MIN_LOG_ROWS` rows (:func:`short_run_log_every`).

  Only ``training.log_every`` may change, so the point trains the same steps with the
  same loss; its config.json records the value used. A ``training.log_every`` set by
  the point's overrides or by ``fixed`` (the command line's ``--config.*`` overrides) is
  the user's choice and kept.
  """
  cfg = apply_overrides(config, point)
  if sets_log_every(point) or sets_log_every(fixed or {}) or "training" not in cfg:
    return cfg
  t = cfg.training
  try:
    steps, every, k = (int(t[f]) for f in ("num_train_steps", "log_every", "steps_per_call"))
  except (KeyError, TypeError, ValueError):
    return cfg   # a field missing or not a number: validation names it
  if min(steps, every, k) < 1:
    return cfg   # not valid: validation names it
  new = short_run_log_every(steps, every, k)
  if new != every:
    cfg.training.log_every = new
  return cfg


def log_every_note(config: ml_collections.ConfigDict, points: Sequence[Point],
                   fixed: Optional[Point] = None) -> str:
  """One line for a sweep's plan saying which points :func:`point_config` makes log more
  often (and how to choose), or "" when none."""
  changes: Dict[Tuple[int, int], int] = {}
  for point in points:
    before = apply_overrides(config, point).training.log_every
    after = point_config(config, point, fixed).training.log_every
    if after != before:
      changes[(before, after)] = changes.get((before, after), 0) + 1
  if not changes:
    return ""
  parts = ", ".join(f"{n} point(s) every {after} steps instead of {before}"
                    for (before, after), n in changes.items())
  return (f"sweep: short points log more often, so that each loss curve has about "
          f"{MIN_LOG_ROWS} rows: {parts} (what they train is unchanged; set {LOG_EVERY} in the sweep's "
          "overrides to choose).")


def format_value(value) -> str:
  """A swept value as point names and plot legends write it (``1e-4`` -> ``0.0001``)."""
  if isinstance(value, float):
    return f"{value:g}"
  if isinstance(value, (tuple, list)):
    return "-".join(format_value(v) for v in value)
  return str(value)


def short_keys(keys: Sequence[str]) -> Dict[str, str]:
  """Each dotted key's last component, or the whole key where two keys share it."""
  last = [k.split(".")[-1] for k in keys]
  return {k: (s if last.count(s) == 1 else k) for k, s in builtins.zip(keys, last)}


def point_names(points: Sequence[Point]) -> List[str]:
  """Readable, stable, filesystem-safe names, e.g. ``lr=0.0001_seed=0``.

  A key is shortened to its last component unless two keys of the sweep share it.
  Names of more than MAX_NAME characters keep a prefix and a hash of the overrides.
  """
  short = short_keys(list(dict.fromkeys(k for p in points for k in p)))
  names = []
  for p in points:
    name = "_".join(f"{short[k]}={format_value(v)}" for k, v in p.items()) or "base"
    name = re.sub(r"[^A-Za-z0-9=._+-]+", "-", name)
    if len(name) > MAX_NAME:
      digest = hashlib.sha1(repr(sorted(p.items())).encode()).hexdigest()[:8]
      name = f"{name[:MAX_NAME - 9]}-{digest}"
    names.append(name)
  seen = {}
  for name, p in builtins.zip(names, points):
    if name in seen:
      raise ConfigError(f"the sweep has two points named {name!r} ({seen[name]} and {p}); "
                        "every point needs its own overrides.")
    seen[name] = p
  return names

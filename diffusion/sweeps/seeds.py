"""Seeds as an axis: the same configuration trained with several ``training.seed`` values,
summarised as a mean with a 95% confidence interval.

``--seeds=K`` repeats every grid point (or a search's best ``--seeds_top`` configurations)
with K training seeds; a grid that sweeps ``training.seed`` itself is grouped the same way.
A configuration is a point's overrides without ``training.seed``; its K values of a metric
give the mean, the half-width of the 95% Student-t interval,

  t_{0.975, K−1} · s / √K   (s the sample standard deviation, K − 1 degrees of freedom),

and K. Configurations are ranked by their mean. The interval is the one a reader expects
from K independent runs; it says how far the mean of K seeds may be from the mean over all
seeds, not how far one more run may land.
"""

import json
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from scipy import stats

SEED_KEY = "training.seed"


def with_seeds(points: Sequence[Dict[str, Any]], seeds: Sequence[int]) -> List[Dict[str, Any]]:
  """Every point once per seed (the point's other keys first, ``training.seed`` last)."""
  return [dict(p, **{SEED_KEY: int(s)}) for p in points for s in seeds]


def seed_values(base_seed: int, k: int) -> List[int]:
  """The K training seeds of a configuration: the config's seed and the K − 1 after it."""
  return [int(base_seed) + i for i in range(int(k))]


def configuration(overrides: Mapping[str, Any]) -> Dict[str, Any]:
  """A point's configuration: its overrides without the training seed."""
  return {k: v for k, v in overrides.items() if k != SEED_KEY}


def configuration_key(overrides: Mapping[str, Any]) -> str:
  """A configuration as a comparable string (JSON of its sorted overrides)."""
  return json.dumps(configuration(overrides), sort_keys=True, default=str)


def t_interval(values: Sequence[float], level: float = 0.95) -> Tuple[float, float, int]:
  """(mean, half-width of the Student-t interval at ``level``, n) of finite ``values``;
  the half-width is NaN for fewer than two values."""
  v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
  n = len(v)
  if n == 0:
    return float("nan"), float("nan"), 0
  mean = sum(v) / n
  if n < 2:
    return mean, float("nan"), n
  sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1))
  return mean, float(stats.t.ppf(0.5 + level / 2.0, n - 1)) * sd / math.sqrt(n), n


def has_seed_groups(overrides: Sequence[Mapping[str, Any]]) -> bool:
  """Whether some configuration appears with two or more seeds."""
  seen: Dict[str, set] = {}
  for o in overrides:
    seen.setdefault(configuration_key(o), set()).add(json.dumps(o.get(SEED_KEY)))
  return any(len(s) > 1 for s in seen.values())


def group(points: Sequence[Mapping[str, Any]], values: Sequence[Mapping[str, float]],
          rank_by: Optional[str], mode: str = "min") -> List[Dict[str, Any]]:
  """One row per configuration, ranked by the mean of ``rank_by``.

  Args:
    points: the ledger's points (their ``overrides``; a point with ``config_id`` groups
      under it).
    values: per point, its metrics ({name: value}; missing or None = not measured).
    rank_by: the metric that ranks configurations (None: keep their order).
    mode: min or max: which end of ``rank_by`` is best.
  Returns:
    [{"configuration": {...}, "n": seeds measured, "seeds": [...], "<metric>": mean,
      "<metric> ci95": half-width}] in rank order; configurations without a value of
    ``rank_by`` last.
  """
  groups: Dict[str, Dict[str, Any]] = {}
  for p, v in zip(points, values):
    key = configuration_key(p["overrides"])
    g = groups.setdefault(key, {"configuration": configuration(p["overrides"]), "seeds": [],
                                "values": {}})
    g["seeds"].append(p["overrides"].get(SEED_KEY, p.get("seed")))
    for name, x in v.items():
      if x is not None:
        g["values"].setdefault(name, []).append(x)
  rows = []
  for g in groups.values():
    row = {"configuration": g["configuration"], "seeds": g["seeds"],
           "n": len(g["values"].get(rank_by, [])) if rank_by else len(g["seeds"])}
    for name, xs in g["values"].items():
      mean, half, _ = t_interval(xs)
      row[name], row[f"{name} ci95"] = mean, half
    rows.append(row)
  if rank_by:
    sign = -1.0 if mode == "max" else 1.0
    rows.sort(key=lambda r: (r.get(rank_by) is None or math.isnan(r[rank_by]),
                             sign * r[rank_by] if r.get(rank_by) is not None and
                             not math.isnan(r[rank_by]) else 0.0))
  return rows


def format_interval(mean: float, half: float) -> str:
  """``0.1234 ± 0.0056`` (``0.1234`` alone where there is no interval)."""
  if mean is None or math.isnan(mean):
    return ""
  return f"{mean:.5g}" if math.isnan(half) else f"{mean:.5g} ± {half:.2g}"

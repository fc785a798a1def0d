"""Population-based training's search side: rank the members, exploit, explore, and keep
the lineage in ``DIR/sweep.json``.

``--scheduler=pbt --sweep_mode=vmap`` trains a grid's group (``--sweep``) or a batch of a
search's trials (``--search``) as one population; every ``--pbt_interval`` steps (a multiple
of ``training.log_every``) the :class:`Controller` ranks the members by the metric of that
step and, following Jaderberg et al. 2017 (§3, "truncation selection" and "perturb"):

  exploit   each member in the bottom ``--pbt_quantile`` (default 0.25; at most half of
            the members) continues from a member drawn from the top quantile (its
            parameters, optimizer state, EMA and step; done on the device by
            :mod:`diffusion.train.pbt`), keeping its own training seed;
  explore   with probability ``--pbt_resample`` (default 0.25) each perturbed field is
            drawn afresh from the space (a grid: one of the axis's values); otherwise a
            numeric range is multiplied by 0.8 or 1.25 and clipped into the range (a
            randint rounded), and a choice (or a grid axis of strings) moves to the
            neighbouring value.

The perturbed fields are the space's (the grid's) keys but ``training.seed``; each must be a
population field (:data:`diffusion.config.POPULATION_FIELDS`: held as arrays in the train
state), else the command is refused in one line. All randomness comes from (the search's
seed, step). The ledger's ``"pbt"`` holds the settings and every decision (the ranking,
who copied whom, the new values and how each was made); each point's ``"schedule"`` its
values over time (``[{"step", "values", "from"}]``). ``pbt_schedules.png`` draws them.
"""

import dataclasses
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from diffusion.config import POPULATION_FIELDS
from diffusion.errors import ConfigError
from diffusion.sweeps import search_settings
from diffusion.sweeps.grid import format_value
from diffusion.sweeps.ledger import Ledger
from diffusion.sweeps.spaces import Choice, Distribution, LogUniform, RandInt, Space
from diffusion.train.pbt import Decision

# Salt of PBT's random numbers: apart from the searcher's and training's.
SALT = 5054
FACTORS = (0.8, 1.25)
NOT_PERTURBED = (search_settings.SEED_KEY,)   # a member keeps its own data order and noise


def _is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class Dimension:
  """How one field is explored: a range (``low``..``high``; ``log``, ``integer``), or a list
  of ``values`` (a choice, or a grid's axis); a numeric grid axis is explored as its
  range and resampled from its values."""
  values: Tuple[Any, ...] = ()
  low: Optional[float] = None
  high: Optional[float] = None
  log: bool = False
  integer: bool = False

  @property
  def is_range(self) -> bool:
    return self.low is not None

  def perturb(self, value, rng: np.random.Generator) -> Tuple[Any, str]:
    """(the perturbed value, how: ``x0.8``, ``x1.25``, ``previous`` or ``next``)."""
    if self.is_range:
      factor = FACTORS[int(rng.integers(2))]
      new = min(max(float(value) * factor, self.low), self.high)
      return (int(round(new)) if self.integer else float(new)), f"x{factor:g}"
    index = _index(self.values, value)
    move = (-1, 1)[int(rng.integers(2))]
    return self.values[min(max(index + move, 0), len(self.values) - 1)], (
        "previous" if move < 0 else "next")

  def resample(self, rng: np.random.Generator) -> Any:
    """A fresh draw: from the range (uniform, log-uniform or integers), else a value."""
    if self.values:
      return self.values[int(rng.integers(len(self.values)))]
    if self.integer:
      return int(rng.integers(int(self.low), int(self.high) + 1))
    if self.log:
      return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
    return float(rng.uniform(self.low, self.high))


def _index(values: Sequence[Any], value) -> int:
  """The position of ``value`` among ``values`` (the nearest, for a number in between)."""
  for i, v in enumerate(values):
    if v == value or (isinstance(v, (list, tuple)) and list(v) == list(value or ())):
      return i
  if _is_number(value) and all(_is_number(v) for v in values):
    return int(np.argmin([abs(float(v) - float(value)) for v in values]))
  return 0


def dimension(dist: Distribution) -> Dimension:
  """A search space's distribution as a :class:`Dimension`."""
  if isinstance(dist, Choice):
    values = dist.values
    if all(_is_number(v) for v in values):
      values = tuple(sorted(values))
    return Dimension(values=tuple(values))
  return Dimension(low=dist.low, high=dist.high, log=isinstance(dist, LogUniform),
                   integer=isinstance(dist, RandInt))


def grid_dimension(values: Sequence[Any]) -> Dimension:
  """A grid axis (its distinct values) as a :class:`Dimension`: numbers as their range,
  resampled from the values; anything else as a choice."""
  distinct = []
  for v in values:
    if not any(v == d for d in distinct):
      distinct.append(v)
  if all(_is_number(v) for v in distinct) and len(distinct) > 1:
    ordered = tuple(sorted(distinct))
    integer = all(isinstance(v, int) for v in ordered)
    return Dimension(values=ordered, low=ordered[0], high=ordered[-1], integer=integer)
  return Dimension(values=tuple(distinct))


def check_perturbable(keys: Sequence[str], what: str) -> List[str]:
  """The fields PBT perturbs (``keys`` but the seed), each a population field: ConfigError
  (one line) naming the first that is not, or when none is left."""
  for key in keys:
    if key not in POPULATION_FIELDS:
      fields = ", ".join(f for f in POPULATION_FIELDS if f not in NOT_PERTURBED)
      raise ConfigError(f"--scheduler=pbt perturbs the members of one population, and {what} "
                        f"varies {key}, which is not a population field (it changes the "
                        f"compiled program); PBT can perturb: {fields}. Drop {key} or use "
                        "--scheduler=none (or asha).")
  perturbed = [k for k in keys if k not in NOT_PERTURBED]
  if not perturbed:
    raise ConfigError(f"--scheduler=pbt has nothing to perturb: {what} varies only "
                      f"{', '.join(keys) or 'nothing'}; give it a hyperparameter to explore, "
                      "e.g. optim.lr.")
  return perturbed


def check_interval(settings: search_settings.SearchSettings, config) -> int:
  """--pbt_interval (default training.log_every): a multiple of log_every, before the end
  of the run; one line otherwise."""
  t = config.training
  interval = settings.pbt_interval or int(t.log_every)
  if interval % int(t.log_every):
    suggestion = max(int(t.log_every), interval // int(t.log_every) * int(t.log_every))
    raise ConfigError(f"--pbt_interval={interval} is not a multiple of training.log_every="
                      f"{t.log_every}, when members report their metric; give e.g. "
                      f"{suggestion}.")
  if interval >= int(t.num_train_steps):
    raise ConfigError(f"--pbt_interval={interval} is not before the end of a run "
                      f"(training.num_train_steps={t.num_train_steps}): PBT would never "
                      "exploit; give fewer steps.")
  return interval


def definition(settings: search_settings.SearchSettings, interval: int, mode: str,
               keys: Sequence[str]) -> Dict[str, Any]:
  """What the ledger's ``"pbt"`` holds of the settings (a folder reused with others is
  refused)."""
  return {"interval": interval, "quantile": settings.pbt_quantile,
          "resample": settings.pbt_resample, "metric": settings.metric, "metric_mode": mode,
          "seed": settings.seed, "keys": list(keys), "decisions": []}


def open_lineage(ledger: Ledger, settings_definition: Dict[str, Any]) -> None:
  """The ledger's ``"pbt"``: created, or checked against the stored settings."""
  with ledger.locked():
    old = ledger.data.get("pbt")
    if old is not None:
      changes = [f"{k} was {old.get(k)!r}, now {v!r}" for k, v in settings_definition.items()
                 if k != "decisions" and old.get(k) != v]
      if changes:
        raise ConfigError(f"the population-based training in {ledger.dir} was defined "
                          f"differently: {'; '.join(changes[:3])}; use another --workdir, or "
                          f"move {ledger.path} away to start over.")
      return
    ledger.data["pbt"] = settings_definition
    ledger.save()


class Controller:
  """The :class:`diffusion.train.pbt.Exploiter` of one population: decides from the
  members' reports, records each decision in the ledger, and forgets those a resumed
  population makes again.

  Args:
    ledger: the sweep's ledger (holding ``"pbt"``, :func:`open_lineage`).
    names: the members' ledger names, in population order.
    overrides: each member's starting overrides (a grid point's, a trial's).
    dims: {perturbed key: its :class:`Dimension`}.
    total: training steps of a member.
    make_config: ``(overrides, label) -> typed config``, validated (ConfigError).
  """

  def __init__(self, ledger: Ledger, names: Sequence[str], overrides: Sequence[Dict[str, Any]],
               dims: Dict[str, Dimension], total: int,
               make_config: Callable[[Dict[str, Any], str], Any]):
    self.ledger, self.names, self.dims = ledger, list(names), dict(dims)
    self.start = [dict(o) for o in overrides]
    self.total, self.make_config = int(total), make_config
    d = ledger.data["pbt"]
    self.interval, self.quantile, self.resample = d["interval"], d["quantile"], d["resample"]
    self.metric, self.mode, self.seed = d["metric"], d["metric_mode"], d["seed"]
    self.current = [{k: o[k] for k in self.dims} for o in self.start]

  # -- the Exploiter interface ------------------------------------------------------------

  def due(self, step: int) -> bool:
    return 0 < step < self.total and step % self.interval == 0

  def _mine(self) -> List[Dict[str, Any]]:
    names = set(self.names)
    return [d for d in self.ledger.data["pbt"]["decisions"] if names & set(d["members"])]

  def recorded(self, step: int) -> bool:
    with self.ledger.locked():
      return any(d["step"] == step for d in self._mine())

  def resume(self, step: Optional[int]) -> Optional[Decision]:
    upto = -1 if step is None else step
    with self.ledger.locked():
      mine = self._mine()
      kept = [d for d in mine if d["step"] <= upto]
      drop = {id(d) for d in mine if d["step"] > upto}
      data = self.ledger.data
      data["pbt"]["decisions"] = [d for d in data["pbt"]["decisions"] if id(d) not in drop]
      for i, name in enumerate(self.names):
        p = self.ledger.point(name)
        schedule = [e for e in p.get("schedule") or [] if e["step"] <= max(upto, 0)]
        p["schedule"] = schedule or [{"step": 0, "values": self.current_start(i), "from": None}]
        self.current[i] = dict(p["schedule"][-1]["values"])
      self.ledger.save()
    at = [d for d in kept if d["step"] == step]
    return self._decision(at[0]) if at else None

  def current_start(self, i: int) -> Dict[str, Any]:
    return {k: self.start[i][k] for k in self.dims}

  def decide(self, step: int, reports: Dict[int, Dict[str, float]]) -> Decision:
    missing = [i for i, r in reports.items() if self.metric not in r]
    if missing:
      logged = sorted(k for r in reports.values() for k in r)
      raise search_settings.MetricNotLogged(
          f"--metric={self.metric} was not logged by step {step}, when PBT ranks the "
          f"members; they log: {', '.join(dict.fromkeys(logged))}. Choose one of those (an "
          "eval/* metric needs its evaluator on, every a divisor of --pbt_interval).")
    ranking = sorted(reports, key=lambda i: (_order(reports[i][self.metric], self.mode), i))
    n = len(ranking)
    quantile = min(int(math.ceil(n * self.quantile)), n // 2)
    top, bottom = ranking[:quantile], ranking[n - quantile:] if quantile else []
    rng = np.random.default_rng([self.seed, step, SALT])
    sources = list(range(len(self.names)))
    copies, configs = [], {}
    for i in bottom:
      j = top[int(rng.integers(len(top)))]
      values, how = self._explore(self.current[j], rng)
      try:
        cfg = self.make_config(dict(self.start[i], **values),
                               f"PBT step {step}: {self.names[i]} from {self.names[j]}")
      except ConfigError as e:   # an explored value the config refuses: keep the copy's
        values, how = dict(self.current[j]), {"all": f"kept ({e})"}
        cfg = self.make_config(dict(self.start[i], **values), self.names[i])
      sources[i], configs[i] = j, cfg
      copies.append({"member": self.names[i], "from": self.names[j], "values": values,
                     "how": how})
    record = {"step": int(step), "members": list(self.names),
              "ranking": [[self.names[i], float(reports[i][self.metric])] for i in ranking],
              "copies": copies}
    with self.ledger.locked():
      self.ledger.data["pbt"]["decisions"].append(record)
      for c in copies:
        p = self.ledger.point(c["member"])
        p.setdefault("schedule", []).append({"step": int(step), "values": c["values"],
                                             "from": c["from"]})
      self.ledger.save()
    for i in configs:
      self.current[i] = dict(next(c["values"] for c in copies
                                  if c["member"] == self.names[i]))
    self._print(record)
    return Decision(int(step), tuple(sources), configs)

  # -- explore and the records ---------------------------------------------------------------

  def _explore(self, values: Dict[str, Any], rng) -> Tuple[Dict[str, Any], Dict[str, str]]:
    new, how = {}, {}
    for key in sorted(self.dims):
      dim = self.dims[key]
      if rng.random() < self.resample:
        new[key], how[key] = dim.resample(rng), "resampled"
      else:
        new[key], how[key] = dim.perturb(values[key], rng)
    return {k: new[k] for k in self.dims}, how

  def _decision(self, record: Dict[str, Any]) -> Decision:
    """A recorded decision as the population applies it (members by name)."""
    index = {n: i for i, n in enumerate(self.names)}
    sources = list(range(len(self.names)))
    configs = {}
    for c in record["copies"]:
      if c["member"] in index and c["from"] in index:
        i = index[c["member"]]
        sources[i] = index[c["from"]]
        configs[i] = self.make_config(dict(self.start[i], **c["values"]), c["member"])
    return Decision(int(record["step"]), tuple(sources), configs)

  def _print(self, record: Dict[str, Any]) -> None:
    moves = "; ".join(f"{c['member']} <- {c['from']} ("
                      + ", ".join(f"{k.split('.')[-1]}={format_value(v)}"
                                  for k, v in c["values"].items()) + ")"
                      for c in record["copies"]) or "no copies"
    print(f"pbt: step {record['step']}: {moves}", flush=True)


def _order(value, mode: str) -> float:
  """Sort key of a metric value: best first; NaN/Inf last."""
  value = float(value)
  if not math.isfinite(value):
    return math.inf
  return -value if mode == "max" else value


# ---- the summary ---------------------------------------------------------------------------


def lineage_text(ledger: Dict[str, Any]) -> str:
  """summary.md's PBT section: the settings, then each copy (step, member, source, values,
  how); "" for a sweep without PBT."""
  d = ledger.get("pbt")
  if not d:
    return ""
  decisions = d.get("decisions") or []
  copies = [(r["step"], c) for r in decisions for c in r["copies"]]
  lines = [f"Population-based training: every {d['interval']} steps the bottom "
           f"{d['quantile']:g} of each population (by {d['metric']}, {d['metric_mode']}) "
           f"copied a member of the top {d['quantile']:g} and explored {', '.join(d['keys'])} "
           f"(×0.8 / ×1.25 or a neighbouring value; resampled with probability "
           f"{d['resample']:g}): {len(decisions)} decisions, {len(copies)} copies. Each "
           "member's values over time are its `schedule` in sweep.json; pbt_schedules.png "
           "draws them."]
  if copies:
    lines += ["", "| step | member | copied | new values | how |", "|---|---|---|---|---|"]
    for step, c in copies:
      values = ", ".join(f"{k}={format_value(v)}" for k, v in c["values"].items())
      how = ", ".join(f"{k.split('.')[-1]} {h}" for k, h in c["how"].items())
      lines.append(f"| {step} | {c['member']} | {c['from']} | {values} | {how} |")
  return "\n".join(lines)


def plot_schedules(ledger: Dict[str, Any], path: str, final: Dict[str, float]) -> Optional[str]:
  """``pbt_schedules.png``: each perturbed field against step, a line per member coloured
  by its final rank (``final``: name -> metric; best = rank 1); None without PBT."""
  d = ledger.get("pbt")
  if not d or not d.get("keys"):
    return None
  import matplotlib  # pylint: disable=import-outside-toplevel  # the plots extra
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  points = [p for p in ledger["points"] if p.get("schedule")]
  order = sorted(points, key=lambda p: (_order(final.get(p["name"], math.nan),
                                               d["metric_mode"]), p["name"]))
  rank = {p["name"]: r for r, p in enumerate(order)}
  keys = d["keys"]
  legend = len(points) <= 16
  fig, axes = plt.subplots(len(keys), 1, figsize=(9.5 if legend else 7, 2.6 * len(keys) + 0.6),
                           squeeze=False)
  cmap = plt.get_cmap("viridis")
  total = max([int((p.get("final") or {}).get("step", 0)) for p in points] +
              [e["step"] for p in points for e in p["schedule"]] + [1])
  for ax, key in zip(axes[:, 0], keys):
    numeric = True
    for p in points:
      xs = [e["step"] for e in p["schedule"]] + [total]
      ys = [e["values"].get(key) for e in p["schedule"]]
      ys.append(ys[-1])
      if not all(_is_number(y) for y in ys):
        numeric = False
        continue
      colour = cmap(rank[p["name"]] / max(len(points) - 1, 1))
      ax.step(xs, ys, where="post", color=colour, lw=1.4,
              label=f"{rank[p['name']] + 1}. {p['name']}" if legend else None)
    values = [e["values"].get(key) for p in points for e in p["schedule"]]
    if numeric and values and min(values) > 0 and max(values) / min(values) > 20:
      ax.set_yscale("log")
    ax.set(ylabel=key, xlabel="step")
  axes[0, 0].set_title(f"PBT schedules, coloured by final rank on {d['metric']} "
                       "(1 = best, yellow = worst)", fontsize=9)
  if legend:   # beside the plots, best first
    handles, labels = axes[0, 0].get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: int(labels[i].split(".")[0]))
    axes[0, 0].legend([handles[i] for i in order], [labels[i] for i in order], fontsize=6,
                      loc="upper left", bbox_to_anchor=(1.01, 1.0))
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def dimensions_of(space: Optional[Space], points: Optional[Sequence[Dict[str, Any]]],
                  keys: Sequence[str]) -> Dict[str, Dimension]:
  """The :class:`Dimension` of each perturbed key: from a search's space, or from the values
  a grid's points give it."""
  if space is not None:
    return {k: dimension(space[k]) for k in keys}
  return {k: grid_dimension([p[k] for p in points if k in p]) for k in keys}

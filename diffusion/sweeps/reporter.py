"""What a trial reports to its search while it trains: the :class:`Reporter` that is the
training loop's ``on_log`` for one trial (the local engine's and Ray Tune's workers'), and
:func:`deadline_of`, the step by which every metric a run logs has appeared once."""

import math
from typing import Any, Callable, Dict, List, Optional, Sequence

from diffusion.errors import ConfigError
from diffusion.io.metric_writers import read_metrics
from diffusion.sweeps.search_settings import MetricNotLogged


class Reporter:
  """``on_log`` of one trial: follows the metric, records it at the rungs, reports it to the
  study and says when ASHA stops the trial.

  Args:
    metric, mode: the metric and which end is better (min | max).
    rungs: ASHA's rung steps (empty: no rungs recorded).
    trial: the Optuna trial to report to (None: a seed replica, never stopped).
    prune: whether the study's pruner may stop the trial.
    deadline: the step by which every metric the run logs has appeared once (the last
      evaluator's first cadence, or the end of the run).
    on_rung: called with the rung records after each new one (the ledger's update).
  """

  def __init__(self, metric: str, mode: str, rungs: Sequence[int], trial=None,
               prune: bool = False, deadline: int = 0,
               on_rung: Optional[Callable[[List[Dict[str, Any]]], None]] = None,
               entry: Optional[Dict[str, Any]] = None):
    self.metric, self.mode, self.rungs = metric, mode, list(rungs)
    self.trial, self.prune, self.deadline, self.on_rung = trial, prune, deadline, on_rung
    entry = entry or {}   # a resumed trial's ledger entry: what it reported before
    self.history: List[Dict[str, Any]] = list(entry.get("rungs") or [])  # metric at rungs
    self.last: Optional[float] = entry.get("metric")
    self.best: Optional[float] = entry.get("best_metric")
    self.step = int(entry.get("steps") or 0)
    self.stopped: Optional[Dict[str, Any]] = None
    self.error: Optional[ConfigError] = None
    self.seen: set = set()

  def __call__(self, step: int, scalars: Dict[str, float]) -> bool:
    self.step = max(self.step, int(step))
    self.seen.update(scalars)
    if self.metric not in scalars:
      if self.last is None and step >= self.deadline:
        names = ", ".join(sorted(n for n in self.seen if n not in ("step", "time"))) or "none"
        self.error = MetricNotLogged(
            f"--metric={self.metric} was not logged by step {step}, when every metric of the "
            f"run has been; the run logs: {names}. Choose one of those (an eval/* metric needs "
            "its evaluator on: --config.eval.<name>.every=N).")
        return True
      return False
    value = float(scalars[self.metric])
    self.last = value
    if math.isfinite(value):
      better = max if self.mode == "max" else min
      self.best = value if self.best is None else better(self.best, value)
    reached = [(k, r) for k, r in enumerate(self.rungs) if r <= step and k >= len(self.history)]
    for k, r in reached:
      self.history.append({"rung": k, "step": r, "at_step": int(step), "value": value})
    if self.trial is not None:
      self.trial.report(value, int(step))
      if self.prune and reached and self.trial.should_prune():
        k, r = reached[-1]
        self.stopped = {"rung": k, "step": r, "at_step": int(step), "value": value,
                        "by": "asha"}
    if reached and self.on_rung is not None:
      self.on_rung(self.history)
    return self.stopped is not None

  def replay(self, workdir: str) -> None:
    """Reports a finished run's logged rows (order of step), never stopping it: a run that
    had already reached its end when it was resumed reports nothing by itself."""
    rows: Dict[int, Dict[str, float]] = {}
    for row in read_metrics(workdir):
      rows.setdefault(int(row["step"]), {}).update(row)
    prune, self.prune = self.prune, False
    try:
      for step in sorted(rows):
        if self(step, rows[step]):
          break
    finally:
      self.prune = prune


def deadline_of(cfg) -> int:
  """The step by which every metric a run of ``cfg`` logs has appeared once: the first log
  step and every enabled evaluator's first cadence (each runs at multiples of its
  ``every`` and at the last step)."""
  t = cfg.training
  every = [int(t.log_every)]
  for section in cfg.get("eval", {}).values():
    if hasattr(section, "get") and int(section.get("every", 0) or 0) > 0:
      every.append(int(section["every"]))
  return min(int(t.num_train_steps), max(every))

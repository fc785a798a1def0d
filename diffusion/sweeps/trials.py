"""Running a search: ask the searcher for a trial, train it, report its metric, tell the
outcome; repeat, keeping ``DIR/sweep.json`` true throughout.

  python train.py --config=FILE --workdir=DIR --search=NAME --trials=N \\
      [--searcher=quasirandom|random|tpe] [--scheduler=none|asha] [--metric=...]

Every trial is an ordinary run in ``DIR/trial<NNN>_<overrides>/`` (``sample.py`` works on
it). A trial reports its metric at every log step through ``on_log(step, scalars) -> stop``
(:class:`Reporter`): the values at ASHA's rungs go to the ledger, every value to the study,
and at a rung the pruner may stop it (status ``stopped``, with the rung and the value that
stopped it). ``--seeds=K`` then trains the best ``--seeds_top`` finished configurations
with K − 1 more training seeds each (entries ``<trial>_seed=S``, outside the study).

Resuming: running the command again (after Ctrl-C or kill -9 of the driver) skips finished
trials, resumes an interrupted one from its checkpoint, and asks the study for the rest: the
samplers are deterministic per trial (:mod:`diffusion.sweeps.search`), so the search goes on
as if it had not stopped. Two drivers on one machine share the study and the ledger: each
update of the ledger holds its lock, and a trial is claimed by the process training it
(``owner``); a trial whose owner is gone is resumed by the next driver that looks.
"""

import dataclasses
import math
import os
import socket
from typing import Any, Callable, Dict, List, Optional, Sequence

from diffusion import extras
from diffusion.errors import ConfigError
from diffusion.evals import maximised_metrics
from diffusion.io.workdir import WorkdirLock, check_workdir, make_workdir
from diffusion.io.metric_writers import read_metrics
from diffusion.sweeps import search_settings
from diffusion.sweeps.grid import point_config, point_names
from diffusion.sweeps.ledger import Ledger
from diffusion.sweeps.points import one_line
from diffusion.sweeps.report import summarize
from diffusion.sweeps.runner import validated_point
from diffusion.sweeps.seeds import SEED_KEY, seed_values
from diffusion.sweeps.spaces import Space, describe, load_space
from diffusion.sweeps.summary import point_metrics
from diffusion.train.loop import Interrupted, train

# on_log(step, scalars) -> True to stop the run at this step (it is saved first).
OnLog = Callable[[int, Dict[str, float]], bool]
# train_fn(config, workdir, *, progress, on_log) -> final metrics (as train.loop.train).
TrainFn = Callable[..., dict]
FINISHED = ("done", "stopped", "failed")


class MetricNotLogged(ConfigError):
  """The search's metric did not appear by the step every logged metric has appeared."""


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
               on_rung: Optional[Callable[[List[Dict[str, Any]]], None]] = None):
    self.metric, self.mode, self.rungs = metric, mode, list(rungs)
    self.trial, self.prune, self.deadline, self.on_rung = trial, prune, deadline, on_rung
    self.history: List[Dict[str, Any]] = []   # the metric at each rung reached
    self.last: Optional[float] = None
    self.best: Optional[float] = None
    self.step = 0
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


@dataclasses.dataclass
class Job:
  """One entry to train: a trial of the study (``trial`` its number) or a seed replica."""
  name: str
  overrides: Dict[str, Any]
  trial: Optional[int]
  config_id: str
  seed: int


def train_and_replay(config, workdir: str, *, progress: bool, on_log: OnLog) -> dict:
  """A run trained to its end by :func:`train.loop.train`, then its logged rows reported
  to ``on_log`` in order of step (until it asks to stop): the search without early
  stopping, for a loop that does not report while it trains."""
  result = train(config, workdir, progress=progress)
  rows: Dict[int, Dict[str, float]] = {}
  for row in read_metrics(workdir):
    rows.setdefault(int(row["step"]), {}).update(row)
  for step in sorted(rows):
    if step > result.get("step", 0):
      break
    if on_log(step, rows[step]):
      break
  return result


def _owner() -> Dict[str, Any]:
  return {"pid": os.getpid(), "host": socket.gethostname()}


def _owner_alive(owner: Optional[Dict[str, Any]], workdir: str) -> bool:
  """Whether the process that claimed an entry is still training it: a live process on
  this machine (not this one), or, on another machine, a held workdir lock."""
  if not owner:
    return False
  if owner.get("host") == socket.gethostname():
    if owner.get("pid") == os.getpid():
      return False
    try:
      os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
      return False
    except (PermissionError, ValueError, TypeError):
      return True
    return True
  if not os.path.isdir(workdir):
    return True     # claimed on another machine, not started yet
  try:
    WorkdirLock(workdir).acquire().release()
  except Exception:  # noqa: BLE001 - held (or unreadable): leave it to its owner
    return True
  return False


def _deadline(cfg) -> int:
  """The step by which every metric a run of ``cfg`` logs has appeared once: the first log
  step and every enabled evaluator's first cadence (each runs at multiples of its
  ``every`` and at the last step)."""
  t = cfg.training
  every = [int(t.log_every)]
  for section in cfg.get("eval", {}).values():
    if hasattr(section, "get") and int(section.get("every", 0) or 0) > 0:
      every.append(int(section["every"]))
  return min(int(t.num_train_steps), max(every))


def _with_heldout_loss(cfg, metric: str, seed: int):
  """A trial judged by the held-out loss logs it at every log step, on the search's set
  (``eval.heldout_loss.seed``): where the config has that evaluator's section."""
  if metric.startswith(search_settings.DEFAULT_METRIC) and "heldout_loss" in cfg.get("eval", {}):
    cfg.eval.heldout_loss.every = cfg.training.log_every
    cfg.eval.heldout_loss.seed = seed
  return cfg


class Search:
  """One driver of a search (see the module docstring); :func:`run_search` runs it."""

  def __init__(self, config, config_file: str, spec: str, sweep_dir: str,
               settings: search_settings.SearchSettings, space: Space, fixed: Dict[str, Any],
               train_fn: TrainFn, progress: bool):
    self.config, self.config_file, self.spec, self.dir = config, config_file, spec, sweep_dir
    self.settings, self.space, self.fixed = settings, space, fixed
    self.train_fn, self.progress = train_fn, progress
    self.mode = settings.mode(maximised_metrics())
    base = point_config(config, {}, fixed)
    t = base.training
    self.total = int(t.num_train_steps)
    self.first_rung = (search_settings.asha_min_steps(settings, self.total, int(t.log_every))
                       if settings.scheduler == "asha" else None)
    self.rungs = (search_settings.rungs(self.first_rung, settings.asha_reduction, self.total)
                  if self.first_rung else [])
    self.ledger: Optional[Ledger] = None
    self.study = None

  # -- the study and the ledger ----------------------------------------------------------

  def open(self) -> None:
    """The ledger (created or checked) and the study in DIR."""
    definition = search_settings.definition(self.settings, describe(self.space), self.mode,
                                    self.first_rung)
    definition["rungs"] = self.rungs
    self.ledger = Ledger.open_search(self.dir, self.config_file, self.spec, self.fixed,
                                     definition)
    extras.require("optuna")   # one line naming the sweeps extra if it is missing
    from diffusion.sweeps import search  # pylint: disable=import-outside-toplevel  # optional
    self.search = search
    self.study = search.open_study(
        self.dir, searcher=self.settings.searcher, seed=self.settings.seed,
        trials=self.settings.trials, mode=self.mode, scheduler=self.settings.scheduler,
        min_steps=self.first_rung, reduction=self.settings.asha_reduction)

  def _entry(self, name: str, overrides: Dict[str, Any], trial: Optional[int],
             config_id: str, seed: int) -> Dict[str, Any]:
    return {"name": name, "overrides": overrides, "status": "running", "error": None,
            "workdir": os.path.join(self.dir, name), "final": {}, "best": {},
            "trial": trial, "config_id": config_id, "seed": seed, "steps": 0, "rungs": [],
            "metric": None, "best_metric": None, "stopped": None, "owner": _owner()}

  def _trial_name(self, number: int, overrides: Dict[str, Any]) -> str:
    return f"trial{number:03d}_{point_names([overrides])[0]}"

  def _adopt_orphans(self) -> None:
    """Trials the study holds but the ledger lacks (a driver killed between asking and
    writing the ledger), entered as pending."""
    known = {p.get("trial") for p in self.ledger.points}
    for t in self.study.get_trials(deepcopy=False):
      if t.number not in known and t.state.name == "RUNNING":
        overrides = self.search.overrides_of(t.params, self.space)
        name = self._trial_name(t.number, overrides)
        entry = self._entry(name, overrides, t.number, name, self.settings.seed)
        entry.update(status="pending", owner=None)
        self.ledger.add(entry)

  def next_job(self) -> Optional[Job]:
    """Under the ledger's lock: an unfinished entry nobody trains, else a new trial while
    the study has fewer than --trials, else a seed replica of a best configuration."""
    with self.ledger.locked():
      self._adopt_orphans()
      for p in self.ledger.points:
        if p["status"] in ("running", "pending") and not _owner_alive(p.get("owner"),
                                                                      p["workdir"]):
          self.ledger.set(p["name"], "running", owner=_owner())
          return Job(p["name"], p["overrides"], p.get("trial"), p.get("config_id", p["name"]),
                     p.get("seed", self.settings.seed))
      if self.search.count(self.study) < self.settings.trials:
        trial, overrides = self.search.ask(self.study, self.space)
        name = self._trial_name(trial.number, overrides)
        self.ledger.add(self._entry(name, overrides, trial.number, name, self.settings.seed))
        return Job(name, overrides, trial.number, name, self.settings.seed)
      return self._next_replica()

  def _next_replica(self) -> Optional[Job]:
    """A seed replica still to train, once every trial has finished (--seeds > 1)."""
    if self.settings.seeds < 2:
      return None
    trials = [p for p in self.ledger.points if p.get("trial") is not None]
    if any(p["status"] not in FINISHED for p in trials):
      return None    # another process still trains a trial: it makes the replicas after
    for p in self.best_configurations(trials):
      for seed in seed_values(self.settings.seed, self.settings.seeds)[1:]:
        name = f"{p['name']}_seed={seed}"
        if any(q["name"] == name for q in self.ledger.points):
          continue
        overrides = dict(p["overrides"], **{SEED_KEY: seed})
        self.ledger.add(self._entry(name, overrides, None, p["name"], seed))
        return Job(name, overrides, None, p["name"], seed)
    return None

  def best_configurations(self, trials: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The --seeds_top trials trained to the end, best metric first."""
    done = [p for p in trials if p["status"] == "done" and p.get("metric") is not None
            and math.isfinite(p["metric"])]
    done.sort(key=lambda p: -p["metric"] if self.mode == "max" else p["metric"])
    return done[:self.settings.top()]

  # -- one job ---------------------------------------------------------------------------

  def run_job(self, job: Job) -> bool:
    """Trains one entry and records its outcome; False when the search must stop here (a
    signal: the entry stays running, to resume)."""
    label = (f"trial {job.trial}" if job.trial is not None else
             f"{job.config_id} seed {job.seed}")
    try:
      cfg = validated_point(self.config, job.overrides, self.fixed, f"search {label}")
    except ConfigError as e:   # a sampled point the config refuses: the search goes on
      self._finish(job, "failed", error=str(e))
      print(f"search: {e}", flush=True)
      return True
    cfg = _with_heldout_loss(cfg, self.settings.metric, self.settings.seed)
    # A trial the study has finished already (a driver killed between telling the study and
    # writing the ledger) reports nothing more: its run resumes and is recorded.
    trial = (self.search.trial_by_number(self.study, job.trial)
             if job.trial is not None and self.search.is_running(self.study, job.trial)
             else None)
    reporter = Reporter(self.settings.metric, self.mode, self.rungs, trial=trial,
                        prune=self.settings.scheduler == "asha" and trial is not None,
                        deadline=_deadline(cfg),
                        on_rung=lambda history: self.ledger.set(job.name, "running",
                                                                rungs=list(history)))
    described = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in job.overrides.items())
    print(f"search: training {label}: {described}", flush=True)
    try:
      result = self.train_fn(cfg, os.path.join(self.dir, job.name), progress=self.progress,
                             on_log=reporter)
    except Interrupted:   # Ctrl-C before its first step: it stays to be resumed
      return False
    except Exception as e:  # noqa: BLE001 - a failing trial never stops the search
      self._finish(job, "failed", reporter, error=one_line(e))
      print(f"search: {label} failed: {one_line(e)}", flush=True)
      return True
    step = int(result.get("step", 0))
    if reporter.error is not None:
      self._finish(job, "failed", reporter, error=str(reporter.error), steps=step)
      raise reporter.error
    if reporter.stopped is not None:
      self._finish(job, "stopped", reporter, steps=step)
      s = reporter.stopped
      print(f"search: {label} stopped at rung {s['rung']} (step {s['step']}): "
            f"{self.settings.metric} {s['value']:.5g} is not in the best 1/"
            f"{self.settings.asha_reduction} there", flush=True)
      return True
    if step < self.total:   # a signal stopped it: saved, to resume
      self.ledger.set(job.name, "running", steps=step, rungs=reporter.history,
                      metric=reporter.last, best_metric=reporter.best, owner=None)
      return False
    if reporter.last is None and reporter.error is None:
      reporter.replay(os.path.join(self.dir, job.name))
      if reporter.error is not None:
        self._finish(job, "failed", reporter, error=str(reporter.error), steps=step)
        raise reporter.error
    if reporter.last is None:   # ended before its deadline without the metric
      error = MetricNotLogged(f"--metric={self.settings.metric} was never logged by {label}; "
                              f"the run logs: {', '.join(sorted(reporter.seen)) or 'none'}.")
      self._finish(job, "failed", reporter, error=str(error), steps=step)
      raise error
    self._finish(job, "done", reporter, steps=step)
    print(f"search: {label} done: {self.settings.metric} {reporter.last:.5g}", flush=True)
    return not result.get("interrupted")   # a signal at the last step stops the search too

  def _finish(self, job: Job, status: str, reporter: Optional[Reporter] = None,
              error: Optional[str] = None, steps: Optional[int] = None) -> None:
    workdir = os.path.join(self.dir, job.name)
    final, best = point_metrics(workdir) if os.path.isdir(workdir) else ({}, {})
    fields = {"final": final, "best": best, "owner": None}
    if reporter is not None:
      fields.update(rungs=reporter.history, metric=reporter.last, best_metric=reporter.best,
                    stopped=reporter.stopped, steps=reporter.step if steps is None else steps)
    self.ledger.set(job.name, status, error, **fields)
    if job.trial is not None:
      value = reporter.last if reporter is not None else None
      self.search.tell(self.study, job.trial, status if status != "done" or
                       (value is not None and math.isfinite(value)) else "failed", value)

  def run(self) -> None:
    while True:
      job = self.next_job()
      if job is None:
        return
      if not self.run_job(job):
        print("search: interrupted; run the same command to resume", flush=True)
        return


def check_space(config, space: Space, fixed: Dict[str, Any], label: str) -> None:
  """Every key of the space is a config field, and the ends of every range (every choice)
  give a valid config on their own: one line naming the key and value, before anything
  trains."""
  for key, dist in space.items():
    for value in dist.corners():
      validated_point(config, {key: value}, fixed, label)


def run_search(config, config_file: str, spec: str, sweep_dir: str,
               settings: search_settings.SearchSettings, *, mode: str = "sequential",
               common_overrides: Optional[Dict[str, Any]] = None, progress: bool = False,
               train_fn: Optional[TrainFn] = None) -> Ledger:
  """Runs (or resumes, or joins) the search ``spec`` of ``config_file`` in ``sweep_dir``.

  Args:
    config: the config with the command line's ``--config.*`` overrides; every trial's
      overrides go on top of it.
    spec: a ``search_<spec>()`` of the config file, or a space ``"key=dist(...);..."``.
    settings: the search flags (:class:`search_settings.SearchSettings`).
    mode: sequential (vmap and ray modes are not available for searches yet).
    common_overrides: the ``--config.*`` overrides, recorded in the ledger.
    train_fn: ``train_fn(config, workdir, *, progress, on_log) -> final metrics``, a run
      that calls ``on_log(step, scalars)`` at every log step and stops when it returns
      True (default: the training loop, reporting after each run: no early stopping).
  Returns:
    the ledger after the run.
  """
  fixed = dict(common_overrides or {})
  label = f"--search={spec}"
  space = load_space(config_file, spec)
  base = point_config(config, {}, fixed)
  search_settings.check_against_config(settings, list(space), base.to_dict(), search=True)
  if settings.metric.startswith(search_settings.DEFAULT_METRIC) and "heldout_loss" not in base.get(
      "eval", {}):
    sections = ", ".join(base.get("eval", {})) or "none"
    raise ConfigError(f"--metric={settings.metric} needs the heldout_loss evaluator, which "
                      f"this config's eval section does not have ({sections}); give "
                      "--metric=loss or an eval/* metric its evaluators log.")
  if mode != "sequential":
    raise ConfigError(f"--search runs its trials one after another for now: use "
                      f"--sweep_mode=sequential (--sweep_mode={mode} comes with issue 29's "
                      "next part).")
  if settings.scheduler == "pbt":
    raise ConfigError("--scheduler=pbt is not available for searches yet (issue 29's next "
                      "part); use --scheduler=none or asha.")
  if train_fn is None and settings.scheduler == "asha":
    raise ConfigError("--scheduler=asha needs a training loop that reports to the search "
                      "while it trains, which comes with issue 29's next part; use "
                      "--scheduler=none for now.")
  check_space(config, space, fixed, label)
  check_workdir(sweep_dir)
  make_workdir(sweep_dir)
  driver = Search(config, config_file, spec, sweep_dir, settings, space, fixed,
                  train_fn or train_and_replay, progress)
  driver.open()
  print(f"search {spec!r}: {settings.trials} trials, {settings.searcher} searcher, scheduler "
        f"{settings.scheduler}"
        + (f" (rungs at steps {', '.join(map(str, driver.rungs))}, η = "
           f"{settings.asha_reduction})" if driver.rungs else "")
        + f", {settings.metric} ({driver.mode})", flush=True)
  try:
    driver.run()
  finally:
    print(summarize(sweep_dir), flush=True)
  return driver.ledger

"""Running a search: ask the searcher for a trial, train it, report its metric, tell the
outcome; repeat, keeping ``DIR/sweep.json`` true throughout.

  python train.py --config=FILE --workdir=DIR --search=NAME --trials=N \\
      [--searcher=quasirandom|random|tpe] [--scheduler=none|asha|pbt] [--metric=...] \\
      [--sweep_mode=sequential|vmap|ray] [--population=P]

Every trial is an ordinary run in ``DIR/trial<NNN>_<overrides>/`` (``sample.py`` works on
it). A trial reports its metric at every log step through the training loop's
``on_log(step, scalars) -> stop`` (:class:`Reporter`): the values at ASHA's rungs go to the
ledger, every value to the study, and at a rung the pruner may stop it (status ``stopped``,
with the rung and the value that stopped it; the loop saves it there and stops).
``--seeds=K`` then trains the best ``--seeds_top`` finished configurations with K − 1 more
training seeds each (entries ``<trial>_seed=S``, outside the study).

``--sweep_mode=sequential`` trains one trial after another; ``vmap`` asks the searcher for
``--population=P`` trials at a time and trains those that differ only in population fields
as one population (:func:`diffusion.train.population.train_population`), ASHA stopping
members inside it (a stopped member is saved and no longer logged; its slot computes on
until the population ends) and ``--scheduler=pbt`` exploiting and exploring between them
(:mod:`diffusion.sweeps.pbt`); ``ray`` hands the trials to Ray Tune
(:mod:`diffusion.sweeps.ray_tune`).

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
from diffusion.sweeps import pbt, search_settings
from diffusion.sweeps.grid import point_config, point_names
from diffusion.sweeps.ledger import Ledger
from diffusion.sweeps.points import one_line
from diffusion.sweeps.report import summarize
from diffusion.sweeps.runner import groups, typed_point, validated_point
from diffusion.sweeps.reporter import Reporter, deadline_of
from diffusion.sweeps.search_settings import MetricNotLogged
from diffusion.sweeps.seeds import SEED_KEY, seed_values
from diffusion.sweeps.spaces import Space, describe, load_space
from diffusion.sweeps.summary import point_metrics
from diffusion.train import population
from diffusion.train.loop import Interrupted, train
from diffusion.train.pbt import train_pbt

# train_fn(config, workdir, *, progress, on_log) -> final metrics (as train.loop.train).
TrainFn = Callable[..., dict]
FINISHED = ("done", "stopped", "failed")
MODES = ("sequential", "vmap", "ray")


@dataclasses.dataclass
class Job:
  """One entry to train: a trial of the study (``trial`` its number) or a seed replica."""
  name: str
  overrides: Dict[str, Any]
  trial: Optional[int]
  config_id: str
  seed: int


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


class Search:
  """One driver of a search (see the module docstring); :func:`run_search` runs it."""

  def __init__(self, config, config_file: str, spec: str, sweep_dir: str,
               settings: search_settings.SearchSettings, space: Space, fixed: Dict[str, Any],
               train_fn: TrainFn, progress: bool, batch: int = 1, strategy: str = "auto"):
    self.config, self.config_file, self.spec, self.dir = config, config_file, spec, sweep_dir
    self.settings, self.space, self.fixed = settings, space, fixed
    self.train_fn, self.progress = train_fn, progress
    self.batch, self.strategy = batch, strategy   # trials per population (vmap mode)
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
    if self.settings.scheduler == "pbt":
      base = point_config(self.config, {}, self.fixed)
      pbt.open_lineage(self.ledger, pbt.definition(
          self.settings, pbt.check_interval(self.settings, base), self.mode,
          pbt.check_perturbable(list(self.space), "the search space")))

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

  def next_jobs(self, n: int) -> List[Job]:
    """Under the ledger's lock, up to ``n`` entries to train: unfinished ones nobody trains,
    then new trials while the study has fewer than --trials, then seed replicas of the best
    configurations (once every trial has finished)."""
    jobs: List[Job] = []
    with self.ledger.locked():
      self._adopt_orphans()
      for p in self.ledger.points:
        if len(jobs) < n and p["status"] in ("running", "pending") and not _owner_alive(
            p.get("owner"), p["workdir"]):
          self.ledger.set(p["name"], "running", owner=_owner())
          jobs.append(Job(p["name"], p["overrides"], p.get("trial"),
                          p.get("config_id", p["name"]), p.get("seed", self.settings.seed)))
      while len(jobs) < n and self.search.count(self.study) < self.settings.trials:
        trial, overrides = self.search.ask(self.study, self.space)
        name = self._trial_name(trial.number, overrides)
        self.ledger.add(self._entry(name, overrides, trial.number, name, self.settings.seed))
        jobs.append(Job(name, overrides, trial.number, name, self.settings.seed))
      while len(jobs) < n and not jobs:
        replica = self._next_replica()
        if replica is None:
          break
        jobs.append(replica)
    return jobs

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

  def _label(self, job: Job) -> str:
    return (f"trial {job.trial}" if job.trial is not None else
            f"{job.config_id} seed {job.seed}")

  def _prepare(self, job: Job):
    """(the validated config, the Reporter) of a job, or None when the config refuses its
    overrides (recorded failed: the search goes on)."""
    label = self._label(job)
    try:
      cfg = validated_point(self.config, job.overrides, self.fixed, f"search {label}")
    except ConfigError as e:   # a sampled point the config refuses: the search goes on
      self._finish(job, "failed", error=str(e))
      print(f"search: {e}", flush=True)
      return None
    cfg = search_settings.heldout_loss_logged(cfg, self.settings.metric, self.settings.seed)
    # A trial the study has finished already (a driver killed between telling the study and
    # writing the ledger) reports nothing more: its run resumes and is recorded.
    trial = (self.search.trial_by_number(self.study, job.trial)
             if job.trial is not None and self.search.is_running(self.study, job.trial)
             else None)
    reporter = Reporter(self.settings.metric, self.mode, self.rungs, trial=trial,
                        prune=self.settings.scheduler == "asha" and trial is not None,
                        deadline=deadline_of(cfg),
                        on_rung=lambda history: self.ledger.set(job.name, "running",
                                                                rungs=list(history)),
                        entry=self.ledger.point(job.name))
    described = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in job.overrides.items())
    print(f"search: training {label}: {described}", flush=True)
    return cfg, reporter

  def run_jobs(self, jobs: Sequence[Job]) -> bool:
    """Trains entries (one: a run; several: populations of those that share a compiled
    program) and records their outcomes; False when the search must stop here (a signal:
    the entries stay running, to resume)."""
    prepared = []
    for job in jobs:
      ready = self._prepare(job)
      if ready is not None:
        prepared.append({"job": job, "config": ready[0], "reporter": ready[1],
                         "workdir": os.path.join(self.dir, job.name)})
    for group in groups(prepared):
      if len(group) == 1 and self.settings.scheduler != "pbt":
        g = group[0]
        try:
          results = [self.train_fn(g["config"], g["workdir"], progress=self.progress,
                                   on_log=g["reporter"])]
        except Interrupted:   # Ctrl-C before its first step: it stays to be resumed
          return False
        except Exception as e:  # noqa: BLE001 - a failing trial never stops the search
          results = [e]
      else:
        try:
          results = self._train_population(group)
        except Interrupted:
          return False
        except MetricNotLogged as e:
          for g in group:
            self._finish(g["job"], "failed", g["reporter"], error=str(e))
          raise
        except Exception as e:  # noqa: BLE001 - a failing population never stops the search
          results = [e] * len(group)
      going_on = [self._outcome(g["job"], g["reporter"], r) for g, r in zip(group, results)]
      if not all(going_on):
        return False
    return True

  def _train_population(self, group: Sequence[Dict[str, Any]]) -> list:
    """A group of trials as one population: their reporters hear each member; with PBT a
    :class:`diffusion.sweeps.pbt.Controller` exploits and explores between them."""
    names = [g["job"].name for g in group]
    print(f"search: training a population of {len(group)}"
          + (" with population-based training" if self.settings.scheduler == "pbt" else ""),
          flush=True)
    reporters = [g["reporter"] for g in group]
    on_log = lambda i, step, scalars: reporters[i](step, scalars)   # noqa: E731
    configs = [g["config"] for g in group]
    workdirs = [g["workdir"] for g in group]
    if self.settings.scheduler != "pbt":
      return population.train_population(configs, workdirs, names=names,
                                         progress=self.progress, strategy=self.strategy,
                                         on_log=on_log)
    if len(group) < 2:
      raise ConfigError(f"--scheduler=pbt needs a population of at least 2 members; "
                        f"{names[0]} has no partner (give --population=P with P >= 2).")
    keys = pbt.check_perturbable(list(self.space), "the search space")
    controller = pbt.Controller(
        self.ledger, names, [g["job"].overrides for g in group],
        pbt.dimensions_of(self.space, None, keys), self.total,
        lambda overrides, label: typed_point(self.config, overrides, self.fixed, label))
    return train_pbt(configs, workdirs, exploiter=controller, names=names,
                     progress=self.progress, strategy=self.strategy, on_log=on_log)

  def _outcome(self, job: Job, reporter: Reporter, result) -> bool:
    """Records one trained entry's outcome; False when the search must stop (a signal)."""
    label = self._label(job)
    if isinstance(result, BaseException):
      self._finish(job, "failed", reporter, error=one_line(result))
      print(f"search: {label} failed: {one_line(result)}", flush=True)
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
      # A run that had already reached its end when it was resumed reports nothing itself.
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
      jobs = self.next_jobs(self.batch)
      if not jobs:
        return
      if not self.run_jobs(jobs):
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
               train_fn: Optional[TrainFn] = None, population_size: Optional[int] = None,
               population_strategy: str = "auto", ray_address: Optional[str] = None,
               ray_gpus_per_trial: Optional[float] = None,
               ray_cpus_per_trial: float = 1.0) -> Ledger:
  """Runs (or resumes, or joins) the search ``spec`` of ``config_file`` in ``sweep_dir``.

  Args:
    config: the config with the command line's ``--config.*`` overrides; every trial's
      overrides go on top of it.
    spec: a ``search_<spec>()`` of the config file, or a space ``"key=dist(...);..."``.
    settings: the search flags (:class:`search_settings.SearchSettings`).
    mode: sequential (one trial after another), vmap (``population_size`` trials at a time
      as populations) or ray (Ray Tune, :mod:`diffusion.sweeps.ray_tune`).
    common_overrides: the ``--config.*`` overrides, recorded in the ledger.
    train_fn: ``train_fn(config, workdir, *, progress, on_log) -> final metrics`` of the
      sequential mode (default: the training loop, :func:`diffusion.train.loop.train`),
      calling ``on_log(step, scalars)`` at every log step and stopping when it says so.
    population_size: vmap mode: trials per population (default: all of ``--trials``).
    population_strategy: vmap mode: auto | vmap | map.
    ray_address, ray_gpus_per_trial, ray_cpus_per_trial: ray mode: the cluster (default:
      a local one) and each trial's resources (default: one GPU where the cluster has
      GPUs, else none).
  Returns:
    the ledger after the run.
  """
  fixed = dict(common_overrides or {})
  label = f"--search={spec}"
  if mode not in MODES:
    raise ConfigError(f"--sweep_mode={mode!r} is not valid; choose one of "
                      f"{', '.join(repr(m) for m in MODES)}.")
  space = load_space(config_file, spec)
  base = point_config(config, {}, fixed)
  search_settings.check_against_config(settings, list(space), base.to_dict(), search=True)
  size = population_size or settings.trials
  if size < 1:
    raise ConfigError(f"--population={size}: give the number of trials per population, "
                      "P >= 1.")
  if settings.seeds > 1 and (settings.scheduler == "pbt" or mode == "ray"):
    raise ConfigError(f"--seeds={settings.seeds} repeats a trial's configuration, which "
                      + ("a PBT member does not keep (its values change as it trains); "
                         "repeat the search with another --config.training.seed instead."
                         if settings.scheduler == "pbt" else
                         "--sweep_mode=ray does not do; run the search with the local engine "
                         "(--sweep_mode=sequential or vmap) for seed repeats."))
  if settings.scheduler == "pbt":
    if mode == "sequential":
      raise ConfigError("--scheduler=pbt trains its members side by side: use "
                        "--sweep_mode=vmap (one population) or --sweep_mode=ray.")
    pbt.check_perturbable(list(space), "the search space")
    pbt.check_interval(settings, base)
    if mode == "vmap" and min(size, settings.trials) < 2:
      raise ConfigError(f"--scheduler=pbt needs populations of at least 2 members; "
                        f"--population={size} with --trials={settings.trials} gives fewer.")
  check_space(config, space, fixed, label)
  check_workdir(sweep_dir)
  make_workdir(sweep_dir)
  if mode == "ray":
    extras.require("ray")   # one line naming the ray extra if it is missing
    from diffusion.sweeps import ray_tune  # pylint: disable=import-outside-toplevel  # heavy
    return ray_tune.run_search(config, config_file, spec, sweep_dir, settings, space, fixed,
                               address=ray_address, gpus=ray_gpus_per_trial,
                               cpus=ray_cpus_per_trial, progress=progress)
  driver = Search(config, config_file, spec, sweep_dir, settings, space, fixed,
                  train_fn or train, progress, batch=size if mode == "vmap" else 1,
                  strategy=population_strategy)
  driver.open()
  print(f"search {spec!r}: {settings.trials} trials, {settings.searcher} searcher, scheduler "
        f"{settings.scheduler}"
        + (f" (rungs at steps {', '.join(map(str, driver.rungs))}, η = "
           f"{settings.asha_reduction})" if driver.rungs else "")
        + (f" (every {pbt.check_interval(settings, base)} steps)"
           if settings.scheduler == "pbt" else "")
        + f", {settings.metric} ({driver.mode})"
        + (f", populations of {size}" if mode == "vmap" else ""), flush=True)
  try:
    driver.run()
  finally:
    print(summarize(sweep_dir), flush=True)
  return driver.ledger

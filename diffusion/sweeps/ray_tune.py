"""A search run by Ray Tune (``train.py --search ... --sweep_mode=ray``), across the machines
of a Ray cluster, keeping the local engine's ``DIR/sweep.json``.

Ray Tune schedules the trials (``tune.Tuner``): one trial per worker, with one GPU per trial
where the cluster has GPUs (``--ray_gpus_per_point``, ``--ray_cpus_per_point``), on a local
Ray instance or an existing cluster (``--ray_address``; DIR on storage every machine shares,
this checkout at the same path on each). What it is told:

  searcher   ``OptunaSearch`` with the local engine's sampler (:func:`search.make_sampler`:
             quasirandom, random or TPE from the search's seed);
  scheduler  asha: ``ASHAScheduler`` (time in training steps; grace period the first rung,
             reduction η: the local engine's rungs); pbt: ``PopulationBasedTraining`` (every
             ``--pbt_interval`` steps; quantile, resample probability; perturbation factors
             1.25 / 0.8) over starting points the searcher draws (Ray's PBT takes no
             search algorithm); none: every trial to its end.

Each trial is an ordinary run in ``DIR/trial<NNN>_<overrides>/`` (NNN: Ray's trial index,
the overrides those it started with) trained by :func:`diffusion.train.loop.train`, whose
``on_log`` reports each logged step to Tune (``tune.report``). A worker lost mid-trial
(kill -9, a pre-empted machine) is retried by Tune (``FailureConfig(max_failures=3)``) and
the run resumes from its own checkpoint in its workdir; an error of the run itself (NaN,
a config it refuses, a metric never logged) is recorded ``failed`` and not retried. With
PBT the trials report their checkpoints (every ``--pbt_interval`` steps, which is then
their ``training.checkpoint_every``) and an exploited trial starts from its source's.

The driver keeps the ledger from Tune's callbacks: each trial's entry (overrides, status,
steps, metric at the rungs, last and best metric, what stopped it, and with PBT its
``schedule`` and the lineage) has the fields of the local engine's, and each finished
trial is added to the study in ``DIR/optuna_journal.log`` (so the summary's parameter
importance works the same). A trial ASHA stops keeps its newest checkpoint (Tune ends its
worker at once; the local engine saves it at the rung). Running the command again resumes
the Tune experiment in ``DIR/ray_tune`` (``Tuner.restore``).
"""

import glob
import math
import os
import shutil
import tempfile
from typing import Any, Dict, List, Optional

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch

from diffusion.errors import ConfigError
from diffusion.evals import maximised_metrics
from diffusion.sweeps import pbt, ray_mode, search, search_settings
from diffusion.sweeps.grid import point_config, point_names
from diffusion.sweeps.ledger import Ledger
from diffusion.sweeps.points import one_line
from diffusion.sweeps.report import summarize
from diffusion.sweeps.reporter import Reporter, deadline_of
from diffusion.sweeps.runner import validated_point
from diffusion.sweeps.spaces import Choice, LogUniform, RandInt, Space, Uniform, describe
from diffusion.sweeps.summary import point_metrics

EXPERIMENT = "ray_tune"
FAILURE_FILE = "ray_failure.txt"   # a trial's own error, which Tune must not retry
MAX_FAILURES = 3


def trial_number(trial) -> int:
  """The index of a Ray Tune trial from 0: the counter its search algorithm gave it (the
  end of a BasicVariantGenerator's trial id; a SearchGenerator's tag counts from 1)."""
  suffix = trial.trial_id.rsplit("_", 1)[-1]
  if "_" in trial.trial_id and suffix.isdigit():
    return int(suffix)
  return int(trial.experiment_tag.split("_", 1)[0]) - 1


def trial_label(trial) -> str:
  """Tune's name of a trial (``trial_name_creator``), which its worker reads back."""
  return f"trial{trial_number(trial):03d}"


def trial_name(number: int, overrides: Dict[str, Any]) -> str:
  """As the local engine names a trial."""
  return f"trial{number:03d}_{point_names([overrides])[0]}"


def trial_workdir(sweep_dir: str, number: int, overrides: Dict[str, Any]) -> str:
  """The trial's folder: the one it started in (PBT changes its values later), else new."""
  found = sorted(glob.glob(os.path.join(sweep_dir, f"trial{number:03d}_*")))
  found = [f for f in found if os.path.isdir(f)]
  return found[0] if found else os.path.join(sweep_dir, trial_name(number, overrides))


def tune_domain(dist):
  """A space's distribution as Ray Tune's (``randint`` excludes its high end there)."""
  if isinstance(dist, Choice):
    return tune.choice(list(dist.values))
  if isinstance(dist, RandInt):
    return tune.randint(int(dist.low), int(dist.high) + 1)
  if isinstance(dist, LogUniform):
    return tune.loguniform(float(dist.low), float(dist.high))
  if isinstance(dist, Uniform):
    return tune.uniform(float(dist.low), float(dist.high))
  raise ValueError(f"no Ray Tune domain for {dist}")


# ---- the trainable (in a worker) ----------------------------------------------------------


def trainable(trial_config: Dict[str, Any], job: Dict[str, Any]) -> None:
  """One trial in a Ray worker: its run, reporting every logged step that holds the metric
  (and with PBT the checkpoint of that step); an error of the run is written to the
  workdir's ``ray_failure.txt`` (not retried)."""
  # pylint: disable=import-outside-toplevel  # the worker imports the training loop itself
  from diffusion.train.loop import NonFiniteLossError, train

  keys, metric = job["keys"], job["metric"]
  number = int(tune.get_context().get_trial_name()[len("trial"):])
  overrides = {k: trial_config[k] for k in keys}
  workdir = trial_workdir(job["sweep_dir"], number, overrides)
  failure = os.path.join(workdir, FAILURE_FILE)
  try:
    cfg = validated_point(job["config"], overrides, job["fixed"], f"search trial {number}")
  except ConfigError as e:
    os.makedirs(workdir, exist_ok=True)
    _write(failure, str(e))
    return
  cfg = search_settings.heldout_loss_logged(cfg, metric, job["seed"])
  interval = job.get("pbt_interval")
  if interval:
    cfg.training.checkpoint_every = interval
  checkpoint = tune.get_checkpoint()
  if checkpoint is not None:   # a restart (a lost worker) or PBT's exploit: its state
    with checkpoint.as_directory() as folder:
      _install(folder, workdir)
  reporter = Reporter(metric, job["mode"], [], deadline=deadline_of(cfg))

  def on_log(step: int, scalars: Dict[str, float]) -> bool:
    if reporter(step, scalars):
      return True   # the metric was never logged: stop, recorded below
    if metric not in scalars:
      return False
    result = {k: float(v) for k, v in scalars.items() if isinstance(v, (int, float))}
    result["step"] = int(step)
    saved = os.path.join(workdir, "checkpoints", str(step))
    if interval and step % interval == 0 and os.path.isdir(saved):
      with tempfile.TemporaryDirectory() as folder:
        shutil.copytree(saved, os.path.join(folder, str(step)))
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))
    else:
      tune.report(result)
    return False

  try:
    train(cfg, workdir, progress=False, on_log=on_log)
  except (ConfigError, NonFiniteLossError, FloatingPointError) as e:
    _write(failure, one_line(e))
    return
  if reporter.error is not None:
    _write(failure, str(reporter.error))


def _write(path: str, text: str) -> None:
  with open(path, "w", encoding="utf-8") as f:
    f.write(text + "\n")


def _install(folder: str, workdir: str) -> None:
  """A reported checkpoint (``<step>/`` of a workdir's checkpoints) as the workdir's only
  checkpoint, so its run resumes from it."""
  steps = [d for d in os.listdir(folder) if d.isdigit()]
  if not steps:
    return
  target = os.path.join(workdir, "checkpoints")
  if os.path.isdir(target) and sorted(os.listdir(target)) == steps and all(
      os.path.isdir(os.path.join(target, s)) for s in steps):
    return   # its own newest checkpoint (a restart): nothing to change
  shutil.rmtree(target, ignore_errors=True)
  os.makedirs(target)
  for step in steps:
    shutil.copytree(os.path.join(folder, step), os.path.join(target, step))


# ---- the driver: the ledger from Tune's callbacks -----------------------------------------


class LedgerCallback(tune.Callback):
  """Keeps ``DIR/sweep.json`` (and the Optuna study in DIR) as the trials run."""

  def __init__(self, ledger: Ledger, space: Space, settings, mode: str, rungs: List[int],
               total: int):
    self.ledger, self.space, self.settings, self.mode = ledger, space, settings, mode
    self.rungs, self.total = rungs, total
    self.metric_error: Optional[str] = None

  def _entry(self, trial) -> Dict[str, Any]:
    number = trial_number(trial)
    with self.ledger.locked():
      for p in self.ledger.points:
        if p.get("trial") == number:
          return p
      overrides = {k: trial.config[k] for k in self.space}
      workdir = trial_workdir(self.ledger.dir, number, overrides)
      name = os.path.basename(workdir)
      entry = {"name": name, "overrides": overrides, "status": "running", "error": None,
               "workdir": workdir, "final": {}, "best": {}, "trial": number,
               "config_id": name, "seed": self.settings.seed, "steps": 0, "rungs": [],
               "metric": None, "best_metric": None, "stopped": None, "owner": None}
      if self.settings.scheduler == "pbt":
        entry["schedule"] = [{"step": 0, "values": dict(overrides), "from": None}]
      self.ledger.add(entry)
      return self.ledger.point(name)

  def on_trial_start(self, iteration, trials, trial, **info):
    p = self._entry(trial)
    if p["status"] != "running":
      self.ledger.set(p["name"], "running")

  def on_trial_result(self, iteration, trials, trial, result, **info):
    p = self._entry(trial)
    step, value = int(result.get("step", 0)), result.get(self.settings.metric)
    if value is None:
      return
    value = float(value)
    rungs = list(p.get("rungs") or [])
    for k, r in enumerate(self.rungs):
      if r <= step and k >= len(rungs):
        rungs.append({"rung": k, "step": r, "at_step": step, "value": value})
    best = p.get("best_metric")
    if math.isfinite(value):
      better = max if self.mode == "max" else min
      best = value if best is None else better(best, value)
    self.ledger.set(p["name"], "running", steps=max(step, int(p.get("steps") or 0)),
                    rungs=rungs, metric=value, best_metric=best)

  def on_trial_complete(self, iteration, trials, trial, **info):
    p = self._entry(trial)
    workdir = p["workdir"]
    final, best = point_metrics(workdir) if os.path.isdir(workdir) else ({}, {})
    failure = os.path.join(workdir, FAILURE_FILE)
    if os.path.exists(failure):
      error = open(failure, encoding="utf-8").read().strip()
      self.ledger.set(p["name"], "failed", error, final=final, best=best)
      self._tell(p, "failed")
      if error.startswith(f"--metric={self.settings.metric} was"):
        self.metric_error = error
      return
    steps = int(p.get("steps") or 0)
    if steps < self.total and self.settings.scheduler == "asha":
      reached = [r for r in p.get("rungs") or [] if r["step"] <= steps]
      last = reached[-1] if reached else {"rung": None, "step": steps, "at_step": steps,
                                           "value": p.get("metric")}
      stopped = dict(last, by="asha")
      self.ledger.set(p["name"], "stopped", final=final, best=best, stopped=stopped)
      self._tell(p, "stopped")
      print(f"search: trial {p['trial']} stopped by Ray Tune's ASHA at step {steps}",
            flush=True)
      return
    self.ledger.set(p["name"], "done", final=final, best=best, steps=max(
        steps, int(final.get("step", 0) or 0)))
    self._tell(p, "done")
    print(f"search: trial {p['trial']} done: {self.settings.metric} {p.get('metric')}",
          flush=True)

  def on_trial_error(self, iteration, trials, trial, **info):
    p = self._entry(trial)
    self.ledger.set(p["name"], "failed", f"the Ray worker failed more than {MAX_FAILURES} "
                    "times (see DIR/ray_tune)")
    self._tell(p, "failed")

  def _tell(self, p: Dict[str, Any], outcome: str) -> None:
    """The finished trial into the study in DIR (its starting values)."""
    import optuna  # pylint: disable=import-outside-toplevel
    p = self.ledger.point(p["name"])
    study = search.open_study(self.ledger.dir, searcher=self.settings.searcher,
                              seed=self.settings.seed, trials=self.settings.trials,
                              mode=self.mode)
    distributions = {k: d.to_optuna() for k, d in self.space.items()}
    params = {k: _optuna_value(self.space[k], p["overrides"][k]) for k in self.space}
    value = p.get("metric")
    if outcome == "done" and value is not None and math.isfinite(value):
      state, values = optuna.trial.TrialState.COMPLETE, [value]
    else:
      state, values = (optuna.trial.TrialState.PRUNED if outcome == "stopped" else
                       optuna.trial.TrialState.FAIL), None
    study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions,
                                              values=values, state=state))


def _optuna_value(dist, value):
  if isinstance(dist, Choice):
    return dist._encoded()[list(dist.values).index(value)]  # pylint: disable=protected-access
  return value


class _MetricStopper(tune.Stopper):
  """Ends the experiment once a trial found the metric never logged."""

  def __init__(self, callback: LedgerCallback):
    self.callback = callback

  def __call__(self, trial_id, result) -> bool:
    return False

  def stop_all(self) -> bool:
    return self.callback.metric_error is not None


class _RecordedPBT(PopulationBasedTraining):
  """Ray Tune's PBT, each exploit also recorded in the ledger's lineage."""

  def __init__(self, *args, ledger: Ledger, callback: LedgerCallback, **kwargs):
    super().__init__(*args, **kwargs)
    self.ledger, self.callback = ledger, callback

  def _exploit(self, tune_controller, trial, trial_to_clone):
    super()._exploit(tune_controller, trial, trial_to_clone)
    member, source = self.callback._entry(trial), self.callback._entry(trial_to_clone)
    keys = list(self._hyperparam_mutations)
    values = {k: trial.config[k] for k in keys}
    before = {k: trial_to_clone.config[k] for k in keys}
    how = {k: _how(before[k], values[k]) for k in keys}
    step = int((trial_to_clone.last_result or {}).get("step", 0))
    with self.ledger.locked():
      decisions = self.ledger.data["pbt"]["decisions"]
      decisions.append({"step": step, "members": [member["name"]], "ranking": [],
                        "copies": [{"member": member["name"], "from": source["name"],
                                    "values": values, "how": how}]})
      p = self.ledger.point(member["name"])
      p.setdefault("schedule", []).append({"step": step, "values": values,
                                           "from": source["name"]})
      self.ledger.save()
    print(f"pbt (Ray Tune): step {step}: {member['name']} <- {source['name']}", flush=True)


def _how(before, after) -> str:
  if isinstance(before, (int, float)) and isinstance(after, (int, float)) and before:
    for factor in (0.8, 1.25):
      if math.isclose(after, before * factor, rel_tol=1e-9):
        return f"x{factor:g}"
  return "resampled" if after != before else "kept"


def _starting_points(space: Space, settings) -> List[Dict[str, Any]]:
  """PBT's starting trials, drawn by the searcher (an in-memory study of its sampler)."""
  import optuna  # pylint: disable=import-outside-toplevel
  study = optuna.create_study(sampler=search.make_sampler(settings.searcher, settings.seed,
                                                          settings.trials))
  points = []
  for _ in range(settings.trials):
    trial, overrides = search.ask(study, space)
    study.tell(trial.number, 0.0)
    points.append(overrides)
  return points


def run_search(config, config_file: str, spec: str, sweep_dir: str, settings, space: Space,
               fixed: Dict[str, Any], *, address: Optional[str] = None,
               gpus: Optional[float] = None, cpus: float = 1.0,
               progress: bool = False) -> Ledger:
  """Runs (or resumes) the search on Ray Tune; returns the ledger (see the module
  docstring)."""
  del progress   # Tune prints its own table; trials run without bars
  mode = settings.mode(maximised_metrics())
  base = point_config(config, {}, fixed)
  total, log_every = int(base.training.num_train_steps), int(base.training.log_every)
  first_rung = (search_settings.asha_min_steps(settings, total, log_every)
                if settings.scheduler == "asha" else None)
  rungs = (search_settings.rungs(first_rung, settings.asha_reduction, total)
           if first_rung else [])
  definition = search_settings.definition(settings, describe(space), mode, first_rung)
  definition.update(rungs=rungs, engine="ray")
  ledger = Ledger.open_search(sweep_dir, config_file, spec, fixed, definition)
  interval = None
  if settings.scheduler == "pbt":
    interval = pbt.check_interval(settings, base)
    keys = pbt.check_perturbable(list(space), "the search space")
    pbt.open_lineage(ledger, pbt.definition(settings, interval, mode, keys))
  callback = LedgerCallback(ledger, space, settings, mode, rungs, total)
  job = {"config": config, "fixed": fixed, "sweep_dir": os.path.abspath(sweep_dir),
         "keys": list(space), "metric": settings.metric, "mode": mode, "seed": settings.seed,
         "pbt_interval": interval}
  started_here = ray_mode.connect(address)
  try:
    per_trial = {"cpu": cpus, "gpu": ray_mode.gpus_per_task(gpus)}
    fn = tune.with_resources(tune.with_parameters(trainable, job=job), per_trial)
    if settings.scheduler == "asha":
      scheduler = ASHAScheduler(time_attr="step", max_t=total, grace_period=first_rung,
                                reduction_factor=settings.asha_reduction)
    elif settings.scheduler == "pbt":
      scheduler = _RecordedPBT(
          time_attr="step", perturbation_interval=interval,
          hyperparam_mutations={k: (list(space[k].values) if isinstance(space[k], Choice)
                                    else tune_domain(space[k])) for k in keys},
          quantile_fraction=settings.pbt_quantile,
          resample_probability=settings.pbt_resample, perturbation_factors=(1.25, 0.8),
          ledger=ledger, callback=callback)
    else:
      scheduler = None
    if settings.scheduler == "pbt":
      searcher = BasicVariantGenerator(points_to_evaluate=_starting_points(space, settings))
      param_space = {k: tune_domain(d) for k, d in space.items()}
    else:
      searcher = OptunaSearch(space={k: d.to_optuna() for k, d in space.items()},
                              metric=settings.metric, mode=mode, sampler=search.make_sampler(settings.searcher, settings.seed,
                                                          settings.trials))
      param_space = {}
    path = os.path.join(os.path.abspath(sweep_dir), EXPERIMENT)
    run_config = tune.RunConfig(
        name=EXPERIMENT, storage_path=os.path.abspath(sweep_dir), callbacks=[callback],
        stop=_MetricStopper(callback), verbose=0,
        failure_config=tune.FailureConfig(max_failures=MAX_FAILURES))
    print(f"search {spec!r} on Ray Tune: {settings.trials} trials ({per_trial['gpu']:g} GPU, "
          f"{cpus:g} CPU each), {settings.searcher if settings.scheduler != 'pbt' else 'PBT'} "
          f"on {address or 'a local Ray instance'}, scheduler {settings.scheduler}"
          + (f" (rungs at steps {', '.join(map(str, rungs))})" if rungs else ""), flush=True)
    if tune.Tuner.can_restore(path):
      tuner = tune.Tuner.restore(path, trainable=fn, resume_unfinished=True,
                                 resume_errored=True, param_space=param_space or None)
    else:
      tuner = tune.Tuner(fn, param_space=param_space, run_config=run_config,
                         tune_config=tune.TuneConfig(
                             metric=settings.metric, mode=mode, search_alg=searcher,
                             scheduler=scheduler, num_samples=settings.trials,
                             reuse_actors=False, trial_name_creator=trial_label))
    tuner.fit()
  finally:
    if started_here:
      ray.shutdown()
    print(summarize(sweep_dir), flush=True)
  if callback.metric_error is not None:
    raise search_settings.MetricNotLogged(callback.metric_error)
  return Ledger(sweep_dir, ledger.data, shared=True)

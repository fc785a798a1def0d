"""Running a sweep: validate every point, then train them sequentially, as vmapped
populations, or as Ray tasks, keeping the ledger true throughout.

Every mode runs ordinary runs in ``<DIR>/<point-name>/`` (so ``sample.py
--workdir=DIR/<point-name>`` works on any of them) and records each point's state
in ``DIR/sweep.json``:

  sequential  one point after another in this process (``train``);
  vmap        points that differ only in population fields (seed, learning rate and
              warm-up, EMA decay, Adam β's, ε, clipping, loss weights) train as one
              population, ``jax.vmap`` over train states, the population axis sharded
              over the devices; groups that differ in anything else run one after
              another;
  ray         each point is a Ray task on a local or existing cluster
              (``--ray_address``); a worker lost mid-point is retried by Ray and the
              point resumes from its checkpoint. Ray is the scheduler.

A failing point (NaN, missing data, ...) is marked failed with its one-line error and
never stops the others. Interrupting a sweep (SIGTERM, Ctrl-C, kill -9) leaves the
current point(s) running in the ledger; the same command resumes them.
"""

from typing import Any, Dict, List, Optional, Sequence

import jax
from jax.experimental import multihost_utils

from diffusion import evals
from diffusion.config import checks
from diffusion.io.workdir import WorkdirLock, check_workdir, make_workdir
from diffusion.config import program_key
from diffusion.errors import ConfigError
from diffusion.sweeps.grid import load_sweep, log_every_note, point_config, point_names
from diffusion.sweeps.ledger import Ledger, missing_result, read_ledger
from diffusion.sweeps.points import finish
from diffusion.sweeps.seeds import SEED_KEY, seed_values, with_seeds
from diffusion.sweeps.summary import summarize
from diffusion.train.loop import Interrupted, train
from diffusion.train.population import train_population

MODES = ("sequential", "vmap", "ray")


def validated_point(config, point: Dict[str, Any], fixed: Optional[Dict[str, Any]],
                    label: str):
  """The config a point (or a search's trial) trains, validated: :func:`grid.point_config`,
  then the config checks; ConfigError ``"<label>: <the one-line error>"``."""
  try:
    cfg = point_config(config, point, fixed)
    evals.check_applies(checks.validate(cfg))
  except ConfigError as e:
    raise ConfigError(f"{label}: {e}") from None
  return cfg


def prepare(config, config_file: str, spec: str,
            fixed: Optional[Dict[str, Any]] = None, seeds: int = 1) -> List[Dict[str, Any]]:
  """[{name, overrides, config}] of every point, each validated (ConfigError naming it).

  A short point logs often enough to draw its loss curve (:func:`grid.point_config`);
  a ``training.log_every`` in the point or in ``fixed`` (the command line's overrides)
  is kept. ``seeds`` > 1 repeats every point with that many training seeds (the
  config's ``training.seed`` and the ones after it)."""
  points = load_sweep(config_file, spec)
  if seeds > 1 and any(SEED_KEY in p for p in points):
    raise ConfigError(f"--seeds={seeds} repeats every point over training seeds, and the "
                      f"grid already sweeps {SEED_KEY}; drop one of them.")
  if seeds > 1:
    points = with_seeds(points, seed_values(config.training.seed, seeds))
  names = point_names(points)
  return [{"name": name, "overrides": point,
           "config": validated_point(config, point, fixed, f"sweep point {name}")}
          for name, point in zip(names, points)]


def run_sweep(config, config_file: str, spec: str, sweep_dir: str, *,
              mode: str = "sequential", retry_failed: bool = False,
              common_overrides: Optional[Dict[str, Any]] = None, progress: bool = False,
              population_strategy: str = "auto", ray_address: Optional[str] = None,
              ray_gpus_per_point: Optional[float] = None, ray_cpus_per_point: float = 1.0,
              ray_max_retries: int = 3, seeds: int = 1) -> Ledger:
  """Runs (or resumes) the sweep ``spec`` of ``config_file`` in ``sweep_dir``.

  Args:
    config: the config with the command line's ``--config.*`` overrides applied; every
      point's overrides go on top of it.
    config_file: the config file (its ``sweep_<spec>()``, if spec is a name).
    spec: a sweep name or a grid ``"key=v1,v2;key2=..."``.
    sweep_dir: DIR: sweep.json, summary.*, and one workdir per point.
    mode: sequential | vmap | ray.
    retry_failed: train failed points again (otherwise they are skipped).
    population_strategy: vmap mode: auto | vmap | map (see train_loop.population_strategy).
    common_overrides: the ``--config.*`` overrides, recorded in the ledger.
    seeds: K > 1 trains every point with K training seeds (``--seeds``); the summary
      groups them by configuration (mean ± 95% interval).
  Returns:
    the ledger after the run.
  """
  if mode not in MODES:
    raise ConfigError(f"--sweep_mode={mode!r} is not valid; choose one of "
                      f"{', '.join(repr(m) for m in MODES)}.")
  if seeds < 1:
    raise ConfigError(f"--seeds={seeds}: give the number of training seeds per point, K >= 1.")
  # every point, before any training
  points = prepare(config, config_file, spec, common_overrides, seeds=seeds)
  check_workdir(sweep_dir)
  make_workdir(sweep_dir)   # a path the system refuses: one line, no folder left
  chief = jax.process_index() == 0
  if mode == "ray" and jax.process_count() > 1:
    raise ConfigError("--sweep_mode=ray starts its own worker processes; run it from one "
                      "process, without --distributed.")
  lock = WorkdirLock(sweep_dir).acquire() if chief else None
  try:
    names = [p["name"] for p in points]
    if chief:
      Ledger.open(sweep_dir, config_file, spec, common_overrides or {}, names,
                  [p["overrides"] for p in points])
    if jax.process_count() > 1:   # every process reads the ledger the chief wrote
      multihost_utils.sync_global_devices("sweep ledger")
    ledger = Ledger(sweep_dir, read_ledger(sweep_dir), read_only=not chief)
    todo = []
    for p in points:
      status = ledger.point(p["name"])["status"]
      gone = missing_result(ledger.point(p["name"])) if status == "done" else None
      if gone:   # the ledger says done, the disk disagrees: train it again
        print(f"sweep: {p['name']} was done but {gone}; pending again", flush=True)
        ledger.set(p["name"], "pending", f"was done, but {gone}", final={}, best={})
        status = "pending"
      if status == "done" or (status == "failed" and not retry_failed):
        print(f"sweep: {p['name']} is {status}, skipped", flush=True)
        continue
      todo.append(p)
    print(f"sweep {spec!r}: {len(points)} points, {len(todo)} to train ({mode})", flush=True)
    note = log_every_note(config, [p["overrides"] for p in points], common_overrides)
    if note:
      print(note, flush=True)
    try:
      if mode == "sequential":
        _sequential(ledger, todo, progress)
      elif mode == "vmap":
        _populations(ledger, todo, progress, population_strategy)
      else:
        from diffusion import extras  # pylint: disable=import-outside-toplevel
        extras.require("ray")  # one line naming the ray extra if it is missing
        from diffusion.sweeps import ray_mode  # pylint: disable=import-outside-toplevel  # heavy, optional
        ray_mode.run(ledger, todo, address=ray_address, gpus=ray_gpus_per_point,
                     cpus=ray_cpus_per_point, max_retries=ray_max_retries)
    finally:
      if chief:
        print(summarize(sweep_dir), flush=True)
  finally:
    if lock is not None:
      lock.release()
  return ledger


def _sequential(ledger: Ledger, todo: Sequence[Dict[str, Any]], progress: bool) -> None:
  for p in todo:
    ledger.set(p["name"], "running")
    print(f"sweep: training {p['name']}", flush=True)
    try:
      result = train(p["config"], ledger.point(p["name"])["workdir"], progress=progress)
    except Interrupted:   # Ctrl-C before its first step: the point stays to be resumed
      print("sweep: interrupted; run the same command to resume", flush=True)
      return
    except Exception as e:  # noqa: BLE001 - one failing point never stops the others
      result = e
    if not finish(ledger, p["name"], result, p["config"].training.num_train_steps):
      print("sweep: interrupted; run the same command to resume", flush=True)
      return


def groups(todo: Sequence[Dict[str, Any]]) -> List[List[Dict[str, Any]]]:
  """Points grouped by :func:`diffusion.config.program_key` (order of first appearance)."""
  out: Dict[str, List[Dict[str, Any]]] = {}
  for p in todo:
    out.setdefault(repr(sorted(program_key(p["config"]).items())), []).append(p)
  return list(out.values())


def _populations(ledger: Ledger, todo: Sequence[Dict[str, Any]], progress: bool,
                 strategy: str = "auto") -> None:
  for group in groups(todo):
    names = [p["name"] for p in group]
    for name in names:
      ledger.set(name, "running")
    print(f"sweep: training a population of {len(group)}: {', '.join(names)}", flush=True)
    try:
      results = train_population([p["config"] for p in group],
                                 [ledger.point(n)["workdir"] for n in names], names=names,
                                 progress=progress, strategy=strategy)
    except Interrupted:   # Ctrl-C before the first step: the points stay to be resumed
      print("sweep: interrupted; run the same command to resume", flush=True)
      return
    except Exception as e:  # noqa: BLE001 - one failing group never stops the others
      results = [e] * len(group)
    complete = [finish(ledger, n, r, p["config"].training.num_train_steps)
                for n, r, p in zip(names, results, group)]
    if not all(complete):
      print("sweep: interrupted; run the same command to resume", flush=True)
      return

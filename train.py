"""Train (or resume) a model, or a sweep of them, from a config file.

  python train.py --config=configs/ddpm/cifar10.py --workdir=runs/ddpm_cifar10 \
      [--config.training.batch_size=64 ...]
  python train.py --config=configs/ddpm/digits.py --workdir=runs/sweep \
      --sweep=lr_ema [--sweep_mode=sequential|vmap|ray] [--seeds=K] [--config.x=y ...]
  python train.py --config=configs/ddpm/digits.py --workdir=runs/search \
      --search=lr_ema --trials=16 [--searcher=quasirandom|random|tpe] \
      [--scheduler=none|asha|pbt] [--metric=eval/heldout_loss] [--seeds=K --seeds_top=M] \
      [--sweep_mode=sequential|vmap|ray] [--population=P]

Everything about a run lives in --workdir (config.json, checkpoints/, tb/,
metrics.jsonl, samples/). Re-running the same command resumes from the latest
checkpoint (a sweep or a search: from its ledger, DIR/sweep.json). Multi-host: pass
--distributed to call jax.distributed.initialize() (cluster settings are
auto-detected on TPU pods, SLURM and Open MPI, or given with --coordinator_address,
--num_processes and --process_id).
"""

import os
import sys

# diffusion before jax: the package's start-up (diffusion.cli.preamble) makes a signal while
# the libraries load one line, exit 2.
from diffusion import cli, sweeps
from diffusion.errors import ConfigError
from diffusion.sweeps import search_settings, trials
from diffusion.train import loop
from diffusion.train.loop import NonFiniteLossError, train

import jax
from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (get_config()).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: checkpoints, logs, samples.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize().")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "With --distributed: "
                                   "host:port of process 0 (else auto-detected).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "With --distributed: how many.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "With --distributed: this one's index.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")
_SWEEP = flags.DEFINE_string("sweep", None, "A sweep_<NAME>() of the config file, or a grid "
                             "\"key=v1,v2;key2=...\"; --workdir is then the sweep's folder.")
_SWEEP_MODE = flags.DEFINE_enum("sweep_mode", "sequential", sweeps.MODES,
                                "sequential, vmap (populations) or ray (one task per point).")
_RETRY = flags.DEFINE_bool("sweep_retry_failed", False, "Train failed sweep points again.")
_STRATEGY = flags.DEFINE_enum("population_strategy", "auto", ("auto", "vmap", "map"),
                              "vmap mode: batch the members (vmap), or run them one by one in "
                              "the one compiled step (map, the memory of one member); auto: vmap.")
_RAY_ADDRESS = flags.DEFINE_string("ray_address", None, "An existing Ray cluster (default: "
                                   "a local Ray instance).")
_RAY_GPUS = flags.DEFINE_float("ray_gpus_per_point", None, "GPUs per Ray task (default: 1 "
                               "where the cluster has GPUs, else 0).")
_RAY_CPUS = flags.DEFINE_float("ray_cpus_per_point", 1.0, "CPUs per Ray task.")
_SEARCH = flags.DEFINE_string("search", None, "A search_<NAME>() of the config file, or a "
                              "space \"key=loguniform(1e-4,1e-2);key2=choice(a,b)\"; "
                              "--workdir is then the search's folder.")
_TRIALS = flags.DEFINE_integer("trials", 16, "Trials a --search draws.")
_SEARCHER = flags.DEFINE_enum("searcher", "quasirandom", search_settings.SEARCHERS,
                              "quasirandom (scrambled Sobol), random, or tpe (learns from "
                              "finished trials).")
_SCHEDULER = flags.DEFINE_enum("scheduler", "none", search_settings.SCHEDULERS,
                               "none; asha (stops the worse trials at rungs); pbt.")
_ASHA_MIN = flags.DEFINE_integer("asha_min_steps", None, "ASHA's first rung, in steps "
                                 "(default: num_train_steps / reduction^2, a multiple of "
                                 "log_every).")
_ASHA_ETA = flags.DEFINE_integer("asha_reduction", 3, "ASHA's reduction factor: the best "
                                 "1/eta of the trials at a rung go on.")
_METRIC = flags.DEFINE_string("metric", search_settings.DEFAULT_METRIC, "The logged metric that "
                              "judges trials (eval/cfid, also spelled "
                              "eval/classifier_fid/cfid).")
_METRIC_MODE = flags.DEFINE_enum("metric_mode", None, search_settings.METRIC_MODES, "min or max "
                                 "(default: max for metrics evaluators maximise, else min).")
_SEEDS = flags.DEFINE_integer("seeds", 1, "Training seeds per configuration (a grid: every "
                              "point; a search: its --seeds_top best).")
_SEEDS_TOP = flags.DEFINE_integer("seeds_top", None, "A search repeats its best M "
                                  "configurations over --seeds (default 3).")
_PBT_INTERVAL = flags.DEFINE_integer("pbt_interval", None, "PBT: steps between exploit / "
                                     "explore (default: training.log_every).")
_PBT_QUANTILE = flags.DEFINE_float("pbt_quantile", 0.25, "PBT: the bottom quantile copies "
                                   "the top one.")
_POPULATION = flags.DEFINE_integer("population", None, "--sweep_mode=vmap: trials of a "
                                   "--search trained as one population (default: all).")
_PBT_RESAMPLE = flags.DEFINE_float("pbt_resample", 0.25, "PBT: probability of resampling a "
                                   "value from the space instead of perturbing it.")
flags.mark_flags_as_required(["config", "workdir"])


def _common_overrides(argv):
  """The command line's --config.x=y overrides, for the sweep's ledger."""
  return {name: sweeps.grid.parse_value(text) for name, text in cli.config_overrides(argv)
          if text is not None}


def _search_settings() -> search_settings.SearchSettings:
  return search_settings.SearchSettings(
      trials=_TRIALS.value, searcher=_SEARCHER.value, scheduler=_SCHEDULER.value,
      metric=_METRIC.value, metric_mode=_METRIC_MODE.value, seed=_CONFIG.value.training.seed,
      asha_min_steps=_ASHA_MIN.value, asha_reduction=_ASHA_ETA.value, seeds=_SEEDS.value,
      seeds_top=_SEEDS_TOP.value, pbt_interval=_PBT_INTERVAL.value,
      pbt_quantile=_PBT_QUANTILE.value, pbt_resample=_PBT_RESAMPLE.value)


def _run(argv):
  settings = _search_settings()
  given = [name for name in search_settings.SEARCH_ONLY + search_settings.SWEEP_OR_SEARCH
           if flags.FLAGS[name].present]
  search_settings.check_flags(settings, search=_SEARCH.value, sweep=_SWEEP.value,
                      sweep_mode=_SWEEP_MODE.value, given=given)
  if _SEARCH.value is not None:
    _run_search(argv, settings)
    return
  if _SWEEP.value is None:
    train(_CONFIG.value, _WORKDIR.value, progress=_PROGRESS.value)
    return
  for name, value in (("--ray_gpus_per_point", _RAY_GPUS.value),
                      ("--ray_cpus_per_point", _RAY_CPUS.value)):
    if value is not None and value < 0:
      raise ConfigError(f"{name}={value} is not valid; it must be >= 0.")
  ledger = sweeps.run_sweep(_CONFIG.value, cli.config_file(argv), _SWEEP.value, _WORKDIR.value,
                   mode=_SWEEP_MODE.value, retry_failed=_RETRY.value,
                   common_overrides=_common_overrides(argv), progress=_PROGRESS.value,
                   population_strategy=_STRATEGY.value,
                   ray_address=_RAY_ADDRESS.value, ray_gpus_per_point=_RAY_GPUS.value,
                   ray_cpus_per_point=_RAY_CPUS.value, seeds=_SEEDS.value,
                   settings=settings)
  failed = [p["name"] for p in ledger.points if p["status"] == "failed"]
  if failed:   # the others are finished; the exit status says not all went well
    raise ConfigError(f"{len(failed)} sweep point(s) failed: {', '.join(failed[:5])}"
                      f"{' ...' if len(failed) > 5 else ''}; their errors are in "
                      f"{os.path.join(_WORKDIR.value, 'summary.md')}; fix them and rerun with "
                      "--sweep_retry_failed.")


def _run_search(argv, settings: search_settings.SearchSettings) -> None:
  ledger = trials.run_search(_CONFIG.value, cli.config_file(argv), _SEARCH.value,
                             _WORKDIR.value, settings, mode=_SWEEP_MODE.value,
                             common_overrides=_common_overrides(argv),
                             progress=_PROGRESS.value, population_size=_POPULATION.value,
                             population_strategy=_STRATEGY.value,
                             ray_address=_RAY_ADDRESS.value, ray_gpus_per_trial=_RAY_GPUS.value,
                             ray_cpus_per_trial=_RAY_CPUS.value)
  failed = [p for p in ledger.points if p["status"] == "failed"]
  if failed and len(failed) == len(ledger.points):   # nothing trained: say so
    raise ConfigError(f"every trial failed (first: {failed[0]['error']}); see "
                      f"{os.path.join(_WORKDIR.value, 'summary.md')}.")


def main(argv):
  # From here on SIGINT and SIGTERM are KeyboardInterrupt (the loop's own handler saves,
  # then stops); one swallowed by a library callback is not printed, and still stops the
  # loop after one call.
  cli.start_computing(on_signal=loop.interrupt, config=_CONFIG.value)
  sys.unraisablehook = loop.drop_swallowed_interrupts
  if _DISTRIBUTED.value:
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value)
  cli.warn_if_accelerator_unused()  # after distributed init: it asks JAX for its devices
  cli.run_main(lambda: _run(sys.argv), (ConfigError, NonFiniteLossError))


if __name__ == "__main__":
  cli.run(main)

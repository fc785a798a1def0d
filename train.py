"""Train (or resume) a model, or a sweep of them, from a config file.

  python train.py --config=configs/ddpm/cifar10.py --workdir=runs/ddpm_cifar10 \
      [--config.training.batch_size=64 ...]
  python train.py --config=configs/ddpm/digits.py --workdir=runs/sweep \
      --sweep=lr_ema [--sweep_mode=sequential|vmap|ray] [--config.x=y ...]

Everything about a run lives in --workdir (config.json, checkpoints/, tb/,
metrics.jsonl, samples/). Re-running the same command resumes from the latest
checkpoint (a sweep: from its ledger, DIR/sweep.json). Multi-host: pass
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
flags.mark_flags_as_required(["config", "workdir"])


def _common_overrides(argv):
  """The command line's --config.x=y overrides, for the sweep's ledger."""
  return {name: sweeps.grid.parse_value(text) for name, text in cli.config_overrides(argv)
          if text is not None}


def _run(argv):
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
                   ray_cpus_per_point=_RAY_CPUS.value)
  failed = [p["name"] for p in ledger.points if p["status"] == "failed"]
  if failed:   # the others are finished; the exit status says not all went well
    raise ConfigError(f"{len(failed)} sweep point(s) failed: {', '.join(failed[:5])}"
                      f"{' ...' if len(failed) > 5 else ''}; their errors are in "
                      f"{os.path.join(_WORKDIR.value, 'summary.md')}; fix them and rerun with "
                      "--sweep_retry_failed.")


def main(argv):
  # From here on SIGINT and SIGTERM are KeyboardInterrupt (the loop's own handler saves,
  # then stops); one swallowed by a library callback still stops the loop after one call.
  cli.start_computing(on_signal=loop.interrupt)
  if _DISTRIBUTED.value:
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value)
  cli.warn_if_accelerator_unused()  # after distributed init: it asks JAX for its devices
  cli.run_main(lambda: _run(sys.argv), (ConfigError, NonFiniteLossError))


if __name__ == "__main__":
  cli.run(main)

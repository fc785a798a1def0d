"""Train (or resume) a model from a config file.

  python train.py --config=configs/ddpm/cifar10.py --workdir=runs/ddpm_cifar10 \
      [--config.training.batch_size=64 ...]

Everything about the run lives in --workdir (config.json, checkpoints/, tb/,
metrics.jsonl, samples/). Re-running the same command resumes from the latest
checkpoint. Multi-host: pass --distributed to call jax.distributed.initialize()
(cluster settings are auto-detected on TPU pods, SLURM and Open MPI).
"""

import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Ctrl-C while the libraries load: nothing is written yet; one line, exit 2.
signal.signal(signal.SIGINT, lambda *_: (print(
    "error: interrupted (Ctrl-C) before the first step; nothing was saved.",
    file=sys.stderr, flush=True), os._exit(2)))

import jax  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from diffusion import cli  # noqa: E402
from diffusion.errors import ConfigError  # noqa: E402
from diffusion.train_loop import NonFiniteLossError, train  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (get_config()).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: checkpoints, logs, samples.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize().")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on: KeyboardInterrupt
  cli.quiet_logs()
  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  cli.run_main(lambda: train(_CONFIG.value, _WORKDIR.value, progress=_PROGRESS.value),
               (ConfigError, NonFiniteLossError))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)

"""Draw samples from a trained run (EMA parameters of its latest checkpoint).

  python sample.py --workdir=runs/ddpm_cifar10 --num_samples=1000 \
      [--sampler=ddim --steps=50 --config.sampling.eta=0.0 ...] [--fid] [--bpd]
      [--ema_std_rel=0.02]           # a post-hoc EMA (runs trained with phema_std_rel)

Writes <out>/samples.png (a grid of the first 256), <out>/samples.npz
(uint8 [N, H, W, C] under the key ``arr_0``, as improved-diffusion writes it) and
<out>/meta.json (sampler, effective steps, eta, seed, checkpoint, count, date, and
the seconds of the sampling, of each evaluator and of the whole call). <out> defaults to
<workdir>/samples_<step>_<sampler>_s<steps>[_eta<eta>]_seed<seed>, numbered _2, _3, ...
if that folder exists: a second call never overwrites the first. ``--num_samples=0
--bpd`` (or ``--eval=bpd``) computes bits/dim without sampling, into
<workdir>/eval_<step>_bpd_seed<seed>. The output place is checked (writable, room for the samples) before
anything is sampled. The run's config is
read from <workdir>/config.json; any of it can be overridden with --config.*.
Sampling is sharded over all local devices; N need not divide the batch size.
Only the EMA parameters are restored: no optimizer is built and no training
data is read (the test split is read for --bpd; --fid reads the training split
once to cache its statistics). The work is :func:`diffusion.generate.generate`'s.
"""

import os
import sys

# diffusion before jax: the package's start-up (diffusion.cli.preamble) makes a signal while
# the libraries load one line, exit 2.
from diffusion import cli, evals, samplers
from diffusion.config import default_config, to_config_dict
from diffusion.errors import ConfigError
from diffusion.generate import generate
from diffusion.io.workdir import load_config

from absl import flags

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's workdir.")
_NUM = flags.DEFINE_integer("num_samples", 64, "Number of samples to draw.")
_BATCH = flags.DEFINE_integer("batch_size", 0, "Samples per compiled call (0: "
                              "config.sampling.batch_size).")
_SAMPLER = flags.DEFINE_string("sampler", None, f"{' | '.join(samplers.SAMPLERS)} "
                               "(default: config.sampling.method).")
_STEPS = flags.DEFINE_integer("steps", None, "Sampling steps (default: "
                              "config.sampling.num_steps; 0 = every level).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_OUT = flags.DEFINE_string("output", "", "Output folder (default "
                           "<workdir>/samples_<step>_<sampler>_s<steps>[_eta<eta>]_seed<seed>, "
                           "numbered _2, _3, ... rather than overwritten).")
_STEP = flags.DEFINE_integer("checkpoint_step", -1, "Checkpoint to load (-1: latest).")
_EMA_STD_REL = flags.DEFINE_float("ema_std_rel", None, "Sample a post-hoc EMA of this "
                                  "relative length σ_rel (EDM2), reconstructed from the run's "
                                  "snapshots (training.phema_std_rel) at --checkpoint_step "
                                  "(-1: the newest snapshot); default: the checkpoint's EMA.")
# --<name>: a shortcut for --eval=<name>, for the evaluators that declare one (bpd, fid).
_SHORTCUTS = {name: flags.DEFINE_bool(name, False, evaluator.SHORTCUT)
              for name, evaluator in evals.EVALUATORS.items() if evaluator.SHORTCUT}
_EVAL = flags.DEFINE_list("eval", [], "Evaluators of config.eval to run on the checkpoint, "
                          "e.g. elbo (VAE), bpd, fid.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.mark_flags_as_required(["workdir"])


def _define_config_flag(argv):
  """Defines --config from <workdir>/config.json so --config.* overrides work."""
  workdir = cli.flag_value(argv, "workdir")
  config = to_config_dict(default_config())
  if workdir and os.path.isfile(os.path.join(workdir, "config.json")):
    try:
      config = load_config(workdir)
    except ConfigError as e:  # truncated, unknown field, bad value: one line, no traceback
      path = os.path.join(workdir, "config.json")
      text = str(e)
      if path not in text:
        text = f"{path}: {text}"
      if "not readable JSON" not in text:
        text += f" Fix or remove that field in {path} (configs/base.py lists every field)."
      cli.fail(text)
  cli.define_config_dict(argv, config, "The run's config (from the workdir).")


def main(argv):
  del argv
  cli.start_computing(config=flags.FLAGS.config)
  cli.run_main(run, ConfigError)


def run():
  requested = [name for name, flag in _SHORTCUTS.items() if flag.value] + _EVAL.value
  generate(flags.FLAGS.config, _WORKDIR.value, num_samples=_NUM.value, seed=_SEED.value,
           output=_OUT.value, evals=requested, batch_size=_BATCH.value,
           checkpoint_step=_STEP.value, sampler=_SAMPLER.value, steps=_STEPS.value,
           progress=_PROGRESS.value, ema_std_rel=_EMA_STD_REL.value)


if __name__ == "__main__":
  _define_config_flag(sys.argv)
  cli.run(main)

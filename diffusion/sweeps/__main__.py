"""The table and plots of a sweep, any time (while it runs, too); the EMA-length sweep.

  python -m diffusion.sweeps summarize DIR
  python -m diffusion.sweeps ema DIR --std_rel=0.01,0.02,0.05,0.1 --eval=classifier_fid \
      [--num_samples=1000 --seed=0 --sampler=ddim --steps=50 --metric=eval/cfid --output=OUT]

DIR is a sweep's folder (``train.py --sweep=... --workdir=DIR``) or a search's
(``--search=...``): its ledger DIR/sweep.json and the runs' metrics become DIR/summary.md,
summary.csv and the plots. A folder holding several sweeps gets comparison.md and
search_progress.png (a curve per sweep). ``ema``: DIR is one run trained with
``training.phema_std_rel``; each EMA length is reconstructed post hoc, sampled and judged
(:mod:`diffusion.sweeps.ema`). Errors are one line (``error: ...``) with exit status 2.
"""

from absl import flags

from diffusion import cli
from diffusion.errors import ConfigError
from diffusion.sweeps.report import summarize

USAGE = ("usage: python -m diffusion.sweeps summarize DIR | python -m diffusion.sweeps ema DIR "
         "--std_rel=0.01,0.02,0.05,0.1 --eval=classifier_fid")

# The flags of ``ema`` (sample.py's, for every length alike).
_STD_REL = flags.DEFINE_string("std_rel", None, "ema: the EMA lengths σ_rel to reconstruct, "
                               "comma-separated.")
_EVAL = flags.DEFINE_list("eval", [], "ema: evaluators of the run's config.eval that judge "
                          "each length, e.g. classifier_fid.")
_NUM = flags.DEFINE_integer("num_samples", 1000, "ema: samples drawn and judged per length.")
_SEED = flags.DEFINE_integer("seed", 0, "ema: sampling seed (the same x_T for every length).")
_SAMPLER = flags.DEFINE_string("sampler", None, "ema: sampling.method (default: the run's).")
_STEPS = flags.DEFINE_integer("steps", None, "ema: sampling.num_steps (default: the run's).")
_BATCH = flags.DEFINE_integer("batch_size", 0, "ema: samples per compiled call (0: "
                              "config.sampling.batch_size).")
_STEP = flags.DEFINE_integer("checkpoint_step", -1, "ema: the snapshot step to reconstruct "
                             "at (-1: the newest).")
_METRIC = flags.DEFINE_string("metric", None, "ema: the metric that picks the best length "
                              "(default: the first the evaluators return).")
_OUT = flags.DEFINE_string("output", "", "ema: the sweep's folder (default DIR/ema_sweep).")
_PROGRESS = flags.DEFINE_bool("progress", True, "ema: progress bars while sampling.")


def _ema(workdir: str) -> None:
  # Imported here: sampling and evaluation load what summarize never needs.
  from diffusion.sweeps import ema  # pylint: disable=import-outside-toplevel
  if _STD_REL.value is None:
    raise ConfigError(f"ema needs the lengths to sweep, --std_rel=0.01,0.02,0.05,0.1. {USAGE}")
  print(ema.ema_sweep(workdir, ema.parse_lengths(_STD_REL.value), _EVAL.value,
                      num_samples=_NUM.value, seed=_SEED.value, sampler=_SAMPLER.value,
                      steps=_STEPS.value, batch_size=_BATCH.value,
                      checkpoint_step=_STEP.value, metric=_METRIC.value, output=_OUT.value,
                      progress=_PROGRESS.value))


def main(argv) -> int:
  """``argv``: the program, ``summarize`` or ``ema``, DIR."""
  if len(argv) != 3 or argv[1] not in ("summarize", "ema"):
    cli.error(f"give the command summarize or ema and the folder DIR. {USAGE}")
    return 2
  if argv[1] == "ema":
    return cli.report(lambda: _ema(argv[2]), ConfigError)
  return cli.report(lambda: print(summarize(argv[2])), ConfigError)


if __name__ == "__main__":
  cli.run(main)

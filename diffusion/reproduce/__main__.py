"""Paper baselines: list them, or run one at a tier's budget.

  python -m diffusion.reproduce list
  python -m diffusion.reproduce NAME [--tier=cpu|gpu|paper|weights] [--workdir=DIR]
      [--seed=N] [--force_tier] [--weights=DIR] [--inception_weights=FILE]

NAME trains (resuming if DIR has its run), evaluates with the registered protocol, prints
``metric | paper | ours | band | ok`` and writes DIR/results.json. Exit status: 0 when
every metric is in its band, 1 when one is not, 2 for an error or an interruption (one
line ``error: ...``; an interrupted run resumes with the same command).
"""

from absl import flags

from diffusion import cli
from diffusion.reproduce import runner

USAGE = ("usage: python -m diffusion.reproduce list | NAME [--tier=cpu|gpu|paper|weights] "
         "[--workdir=DIR]")

_TIER = flags.DEFINE_string("tier", "cpu", "cpu | gpu | paper | weights (`list` shows each "
                            "entry's tiers).")
_WORKDIR = flags.DEFINE_string("workdir", "", "The run's folder (default "
                               "runs/reproduce/<NAME>_<tier>).")
_SEED = flags.DEFINE_integer("seed", 0, "The experiment's seed.")
_FORCE_TIER = flags.DEFINE_bool("force_tier", False, "Run a gpu/paper tier even where JAX "
                                "sees only the CPU.")
_WEIGHTS = flags.DEFINE_string("weights", "", "Entries of released weights: the imported run "
                               "(python -m diffusion.pretrained import SRC --workdir=DIR).")
_INCEPTION = flags.DEFINE_string("inception_weights", "", "The converted FID Inception weights "
                                 "(.npz) for FID / IS.")


def main(argv) -> int:
  """``argv``: the program, then the one positional argument (``list`` or NAME)."""
  if len(argv) != 2:
    given = "no NAME given" if len(argv) < 2 else f"one NAME, not {' '.join(argv[1:])!r}"
    cli.error(f"{given}; `python -m diffusion.reproduce list` shows the names. {USAGE}")
    return 2
  if argv[1] == "list":
    print(runner.listing())
    return 0
  cli.start_computing()
  return runner.main(argv[1], tier=_TIER.value, workdir=_WORKDIR.value, seed=_SEED.value,
                     force_tier=_FORCE_TIER.value, weights=_WEIGHTS.value,
                     inception_weights=_INCEPTION.value)


if __name__ == "__main__":
  cli.run(main)

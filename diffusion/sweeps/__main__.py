"""The table and plots of a sweep, any time (while it runs, too).

  python -m diffusion.sweeps summarize DIR

DIR is a sweep's folder (``train.py --sweep=... --workdir=DIR``) or a search's
(``--search=...``): its ledger DIR/sweep.json and the runs' metrics become DIR/summary.md,
summary.csv and the plots. A folder holding several sweeps gets comparison.md and
search_progress.png (a curve per sweep). Errors are one line (``error: ...``) with exit
status 2.
"""

from diffusion import cli
from diffusion.errors import ConfigError
from diffusion.sweeps.report import summarize

USAGE = "usage: python -m diffusion.sweeps summarize DIR"


def main(argv) -> int:
  """``argv``: the program, ``summarize``, DIR."""
  if len(argv) != 3 or argv[1] != "summarize":
    cli.error(f"give the command summarize and the sweep's folder DIR. {USAGE}")
    return 2
  return cli.report(lambda: print(summarize(argv[2])), ConfigError)


if __name__ == "__main__":
  cli.run(main)

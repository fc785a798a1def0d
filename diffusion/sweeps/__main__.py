"""``python -m diffusion.sweeps summarize DIR``: the table and plots of a sweep."""

import sys

from diffusion.sweeps.runner import main_summarize

if __name__ == "__main__":
  sys.exit(main_summarize(sys.argv[1:]))

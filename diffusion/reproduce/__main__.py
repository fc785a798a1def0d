"""``python -m diffusion.reproduce list | NAME [--tier=cpu|gpu|paper] [--workdir=DIR]``."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from diffusion import compile_cache, xla_cpu  # noqa: E402
from diffusion.reproduce.runner import main  # noqa: E402

if __name__ == "__main__":
  compile_cache.enable()
  xla_cpu.configure()
  sys.exit(main(sys.argv[1:]))

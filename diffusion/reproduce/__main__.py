"""``python -m diffusion.reproduce list | NAME [--tier=cpu|gpu|paper] [--workdir=DIR]``."""

import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# A signal while the libraries load: nothing is written yet; one line, exit 2.
for _sig in (signal.SIGINT, signal.SIGTERM):
  signal.signal(_sig, lambda *_: (print("error: interrupted while starting; nothing was "
                                        "written.", file=sys.stderr, flush=True), os._exit(2)))

from diffusion import compile_cache, xla_cpu  # noqa: E402
from diffusion.reproduce.runner import main  # noqa: E402

if __name__ == "__main__":
  compile_cache.enable()
  xla_cpu.configure()
  sys.exit(main(sys.argv[1:]))

"""Shared command-line plumbing for train.py and sample.py: one-line errors.

A bad flag (an unknown ``--config.a.b`` field, a value of the wrong type), a
config file that is missing or does not run, a bad config value, or Ctrl-C before
the first step prints ``error: <one line>`` and exits with status 2, never a
traceback.
"""

import logging
import os
import re
import sys
import threading

from absl import flags


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  # Failed orbax/TensorStore writes report again when their futures are collected at
  # exit; the one line above has said it.
  # Library threads that failed with the run (e.g. TensorStore writers on a full disk)
  # may still print while the process exits; the line above has said it all.
  for name in ("asyncio", "absl"):
    logging.getLogger(name).setLevel(logging.CRITICAL)
  threading.excepthook = lambda args: None
  sys.unraisablehook = lambda unraisable: None
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  sys.exit(2)


def config_file(argv) -> str | None:
  """The file of ``--config=FILE[:ARGS]`` (config_flags' spelling), or None."""
  for i, arg in enumerate(argv[1:], 1):
    if arg.startswith("--config="):
      return arg.split("=", 1)[1].split(":", 1)[0]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1].split(":", 1)[0]
  return None


def check_config_file(argv) -> None:
  """A missing or broken ``--config`` file as one line (before config_flags runs it)."""
  path = config_file(argv)
  if path is None:
    return
  if not os.path.isfile(path):
    _fail(f"--config={path}: no such file; give a config file such as "
          "configs/ddpm/digits.py.")
  try:
    with open(path, encoding="utf-8") as f:
      compile(f.read(), path, "exec")
  except SyntaxError as e:
    _fail(f"--config={path}: syntax error at line {e.lineno}: {e.msg}.")
  except (OSError, UnicodeDecodeError) as e:
    _fail(f"--config={path}: cannot be read ({e}).")


def parse_flags(argv):
  """absl ``flags_parser`` for ``app.run``: parse errors become one line."""
  check_config_file(argv)
  if "config" in flags.FLAGS:  # --helpfull: one line, not a YAML dump of the whole config
    flags.FLAGS["config"].default_as_str = ("'the config file / the workdir's config.json; "
                                            "--config.<field>=... overrides a field "
                                            "(configs/base.py lists them)'")
  try:
    parsed = flags.FLAGS(argv)
  except flags.Error as e:
    _fail(str(e).splitlines()[0])
  except (AttributeError, KeyError) as e:
    if not any(a.startswith("--config.") for a in argv[1:]):
      _fail(f"--config={config_file(argv)}: get_config() failed: {type(e).__name__}: {e}")
    # ml_collections' config_flags: an override naming a field the config lacks.
    while e.args and isinstance(e.args[0], Exception):  # AttributeError(KeyError(...))
      e = e.args[0]
    text = str(e.args[0]) if e.args else str(e)
    missing = re.search(r"'([^']+)'", text)
    missing = missing.group(1) if missing else None
    bad = next((a.split("=", 1)[0] for a in argv[1:] if a.startswith("--config.") and
                missing in a.split("=", 1)[0].split(".")), "a --config.* override")
    hint = re.search(r'Did you mean "([^"]+)"', text)
    hint = f' (did you mean "{hint.group(1)}"?)' if hint else ""
    _fail(f"{bad}: the config has no field {missing!r}{hint}; configs/base.py lists every "
          "field.")
  except Exception as e:  # noqa: BLE001 - the config file's own code failed
    _fail(f"--config={config_file(argv)}: get_config() failed: {type(e).__name__}: "
          f"{(str(e).splitlines() or [''])[0]}")
  if "config" in flags.FLAGS:
    value = flags.FLAGS["config"].value
    error = getattr(value, "_error", None)   # config_flags' stand-in for a failed load
    if error is not None:
      _fail(f"--config={config_file(argv)}: get_config() failed: "
            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
  return parsed


class _DropRoutine(logging.Filter):
  """Drops warnings that say nothing to act on: orbax's three read-only notes on every
  restore (sample.py, diffusion.load), tfds's "OpenCV is not installed", and tfds's
  "has no dataset_info.json" for folders that hold no prepared dataset."""

  PATTERNS = ("read_only=True", "Given directory is read only", "OpenCV is not installed",
              "dataset_info.json")

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno >= logging.ERROR:
      return True
    try:
      text = record.getMessage()
    except Exception:  # noqa: BLE001 - a malformed record: keep it
      return True
    return not any(p in text for p in self.PATTERNS)


_FILTER = _DropRoutine()


def quiet_logs() -> None:
  """orbax (via absl) and jax (backend probing: "Unable to initialize backend
  'tpu'") log routine steps at INFO; keep the console for what matters, and drop the
  routine warnings of :class:`_DropRoutine`."""
  for name in ("absl", "jax"):
    logging.getLogger(name).setLevel(logging.WARNING)
  for name in ("absl", "tensorflow_datasets", "root", ""):
    logger = logging.getLogger(name) if name else logging.getLogger()
    if _FILTER not in logger.filters:
      logger.addFilter(_FILTER)


def run_main(main_fn, errors) -> None:
  """Calls ``main_fn()``; exceptions of the types in ``errors`` and Ctrl-C print one
  line and exit 2."""
  try:
    main_fn()
  except errors as e:
    _fail(str(e))
  except KeyboardInterrupt:
    _fail("interrupted (Ctrl-C); nothing more was written.")


# The install line that gives JAX the accelerator this machine has (README: Install).
INSTALL_LINES = {
    "gpu": "pip install -e '.[cuda12]'  (the CUDA 12 jaxlib at the pinned jax version)",
    "tpu": "pip install -e '.[tpu]'",
}


def visible_accelerator() -> str | None:
  """'gpu' or 'tpu' when the system shows one (``/dev/nvidia0`` or ``nvidia-smi`` on the
  PATH; ``/dev/accel0``), else None. Reads no JAX state."""
  import shutil  # pylint: disable=import-outside-toplevel
  if os.path.exists("/dev/nvidia0") or shutil.which("nvidia-smi"):
    return "gpu"
  if os.path.exists("/dev/accel0"):
    return "tpu"
  return None


def accelerator_warning(platforms) -> str | None:
  """One line when the system has a GPU/TPU but JAX's devices (``platforms``: their
  ``.platform`` names) are all CPUs; None otherwise (or when JAX_PLATFORMS asks for
  the CPU on purpose)."""
  if any(p != "cpu" for p in platforms):
    return None
  if os.environ.get("JAX_PLATFORMS", "").strip().lower() == "cpu":
    return None
  kind = visible_accelerator()
  if kind is None:
    return None
  return (f"warning: this machine has a {kind.upper()} but JAX sees only the CPU "
          f"(the CPU jaxlib is installed); to train on the {kind.upper()}: "
          f"{INSTALL_LINES[kind]}")


def warn_if_accelerator_unused() -> None:
  """Prints :func:`accelerator_warning`'s line to stderr, if any (train.py start-up)."""
  import jax  # pylint: disable=import-outside-toplevel
  line = accelerator_warning([d.platform for d in jax.devices()])
  if line:
    print(line, file=sys.stderr, flush=True)

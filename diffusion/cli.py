"""The one command-line plumbing of every command: train.py, sample.py and
``python -m diffusion.<reproduce | data | sweeps | pretrained | evals.inception_convert>``.

Each parses its command line with absl flags (``run(main)``: ``app.run`` with
:func:`parse_flags`; positional arguments such as subcommands reach ``main(argv)`` after
the program's name). A bad flag (an unknown flag or ``--config.a.b`` field, a value of
the wrong type), a config file that is missing or does not run, a bad config value, or a
signal while the command starts prints ``error: <one line>`` (:func:`error`, the one
printer) and exits with status 2, never a traceback.
"""

import atexit
import logging
import os
import re
import signal
import sys
import threading
from typing import List, Optional, Tuple

from absl import app, flags

from diffusion.errors import ConfigError, Interrupted, signal_again, signal_name

# Scripts at the repository's root that are commands (``python -m diffusion.<command>``
# is told by argv[0], see is_starting_command).
COMMAND_SCRIPTS = ("train.py", "sample.py")


def error(message: str) -> None:
  """Prints ``error: <message>`` on stderr: the one line a command fails with."""
  print(f"error: {message}", file=sys.stderr, flush=True)


def exit_quietly(status: int = 2) -> None:
  """Exits with ``status`` after the one ``error:`` line, letting nothing else print."""
  # Failed orbax/TensorStore writes report again when their futures are collected at
  # exit; library threads that failed with the run (e.g. TensorStore writers on a full
  # disk) may still print while the process exits. The one line has said it all.
  for name in ("asyncio", "absl"):
    logging.getLogger(name).setLevel(logging.CRITICAL)
  threading.excepthook = lambda args: None
  sys.unraisablehook = lambda unraisable: None
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  sys.exit(status)


def fail(message: str) -> None:
  """:func:`error`, then :func:`exit_quietly` with status 2."""
  error(message)
  exit_quietly(2)


# ---- start-up: before the heavy libraries load ------------------------------------------


def is_starting_command(argv) -> bool:
  """Whether this process is one of the commands, starting: ``python train.py`` or
  ``python sample.py``, or ``python -m diffusion.<command>`` (Python shows argv[0] as
  "-m" while it imports the packages above the command's module)."""
  return bool(argv) and (argv[0] == "-m" or os.path.basename(argv[0]) in COMMAND_SCRIPTS)


def _interrupted_while_starting(signum, frame) -> None:
  del frame
  what = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
  error(f"interrupted ({what}) while starting; nothing was written.")
  os._exit(2)   # mid-import: nothing to clean up, and no KeyboardInterrupt traceback


def preamble() -> None:
  """The start of every command, before JAX and TensorFlow load (``diffusion/__init__.py``
  calls it first when :func:`is_starting_command`): TensorFlow's C++ logs quiet, and
  SIGINT / SIGTERM one line and exit 2 (nothing is written yet). :func:`run` ends this
  phase when the command's ``main`` starts."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, _interrupted_while_starting)


def _terminated(signum, frame) -> None:
  del frame
  raise Interrupted(signal=signal.Signals(signum).name)


def _resend_swallowed_interrupt(unraisable) -> None:
  """``sys.unraisablehook`` from :func:`end_startup` on. Python cannot raise an exception
  inside a weakref callback, a ``__del__`` or a gc callback: it prints it ("Exception
  ignored in ...") and goes on, so a Ctrl-C or SIGTERM whose KeyboardInterrupt is raised
  there would be lost, with a traceback under the command's lines. It is not printed, and
  the signal is sent again 50 ms later, when the callback is over. (train.py and the
  reproductions, whose handlers record each signal, drop it instead:
  ``diffusion.train.loop.drop_swallowed_interrupts``.)"""
  if not issubclass(unraisable.exc_type, KeyboardInterrupt):
    sys.__unraisablehook__(unraisable)
    return
  signal_again(signal.SIGTERM if signal_name(unraisable.exc_value) == "SIGTERM"
               else signal.SIGINT)


def end_startup() -> None:
  """From here on Ctrl-C is KeyboardInterrupt and SIGTERM :class:`Interrupted` too (so a
  command cleans up what it made either way; a command's ``main`` may install its own
  handlers on top), and one raised where Python cannot raise it is sent again
  (:func:`_resend_swallowed_interrupt`)."""
  defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: _terminated}
  for sig, handler in defaults.items():
    if signal.getsignal(sig) is _interrupted_while_starting:
      signal.signal(sig, handler)
  sys.unraisablehook = _resend_swallowed_interrupt


def exiting(status: int) -> None:
  """The command is done (its status is ``status``): a signal from here on, while the
  interpreter and the libraries shut down, ends the process at once with that status and
  prints nothing (an exit 130 after the success lines would say it failed). From the
  interpreter's exit handlers on, the signals are ignored: Python's finalization puts back
  the system's default handlers, under which a late Ctrl-C killed the finished command
  (status -2)."""
  def handler(signum, frame):
    del signum, frame
    os._exit(status)   # pylint: disable=protected-access

  def ignore():
    for sig in (signal.SIGINT, signal.SIGTERM):
      signal.signal(sig, signal.SIG_IGN)   # finalization keeps an ignored signal ignored
  try:
    for sig in (signal.SIGINT, signal.SIGTERM):
      signal.signal(sig, handler)
  except ValueError:   # not the main thread (a command run in-process): nothing to do
    return
  atexit.register(ignore)   # registered last, so it runs first of the exit handlers


def _flush_and_exit(status: int) -> None:
  """Ends the process at once with ``status`` after flushing the standard streams: after an
  interrupt, no library thread (a computation still running, a writer) gets to run or
  crash while the interpreter tears down."""
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (OSError, ValueError):
      pass
  os._exit(status)   # pylint: disable=protected-access


def start_computing(on_signal=None, config=None) -> None:
  """What every command that computes does once its flags are parsed, before JAX starts
  its backends: JAX's persistent compilation cache (:mod:`diffusion.compile_cache`), the
  CPU's convolution kernel for ``config``'s network (:mod:`diffusion.xla_cpu`: measured once
  per machine, nothing for networks without convolutions; None: the DDPM CIFAR-10 U-Net's
  shapes) and, given ``on_signal``, SIGINT and SIGTERM handled by it (train.py: the loop's
  "save, then stop"). A bad DIFFUSION_CPU_CONVOLUTIONS is one error line."""
  # Imported here: this module loads before JAX (preamble), these load JAX.
  from diffusion import compile_cache, xla_cpu  # pylint: disable=import-outside-toplevel
  if on_signal is not None:
    for sig in (signal.SIGINT, signal.SIGTERM):
      signal.signal(sig, on_signal)
  compile_cache.enable()
  try:
    xla_cpu.configure(config)
  except ConfigError as e:
    fail(str(e))


def run(main) -> None:
  """Runs a command: ``app.run(main)`` with :func:`parse_flags`. Once the start-up phase is
  over (and the logs are quieted, :func:`quiet_logs`), ``main(argv)`` gets what absl leaves
  of the command line: the program's name, then the positional arguments (a subcommand,
  its operands); its return value is the exit status (None: 0)."""
  def started(argv):
    end_startup()
    quiet_logs()   # after app.run set up absl logging, before any library logs
    try:
      status = main(argv)
    except SystemExit as e:
      exiting(e.code if isinstance(e.code, int) else 2)
      raise
    exiting(status or 0)
    return status
  app.run(started, flags_parser=parse_flags)


def subcommand(argv, commands, usage: str) -> str:
  """The subcommand ``argv[1]`` (absl's leftovers: the program, then the positional
  arguments) when it is one of ``commands``; ConfigError naming the choices otherwise."""
  if len(argv) > 1 and argv[1] in commands:
    return argv[1]
  given = f"{argv[1]!r} is not a command" if len(argv) > 1 else "no command given"
  names = list(commands)
  choices = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
  raise ConfigError(f"{given}; choose {choices}. {usage}")


# ---- the command line before absl parses it -------------------------------------------
# config_flags runs the config file while absl parses, so a few values are read first.


def flag_value(argv, name: str) -> Optional[str]:
  """The value of ``--name=V`` or ``--name V`` in ``argv`` (the last, as absl takes it;
  none after ``--``), or None."""
  value = None
  for i, arg in enumerate(argv[1:], 1):
    if arg == "--":
      break
    if arg.startswith(f"--{name}="):
      value = arg.split("=", 1)[1]
    elif arg == f"--{name}" and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def config_overrides(argv) -> List[Tuple[str, Optional[str]]]:
  """``(field path, text)`` of each ``--config.<path>=<text>`` in ``argv`` (text None for
  ``--config.<path>`` without ``=``), in order."""
  out = []
  for arg in argv[1:]:
    if arg == "--":
      break
    if arg.startswith("--config."):
      name, eq, text = arg[len("--config."):].partition("=")
      out.append((name, text if eq else None))
  return out


def config_file(argv) -> str | None:
  """The file of ``--config=FILE[:ARGS]`` (config_flags' spelling), or None."""
  value = flag_value(argv, "config")
  return None if value is None else value.split(":", 1)[0]


def check_config_file(argv) -> None:
  """A missing or broken ``--config`` file as one line (before config_flags runs it)."""
  # Imported here: this module loads before JAX (preamble), the config package after it.
  from diffusion.config import files  # pylint: disable=import-outside-toplevel
  path = config_file(argv)
  if path is None:
    return
  try:
    files.check_file(path, name=f"--config={path}")
  except ConfigError as e:
    fail(str(e))


def unknown_override(argv, e: BaseException) -> str:
  """The line for ml_collections' config_flags refusing an override that names a field
  the config lacks (an AttributeError or KeyError, raised while parsing or, for a
  config defined from a dict as sample.py's, while the flag is defined)."""
  overridden = [name for name, _ in config_overrides(argv)]
  while e.args and isinstance(e.args[0], Exception):  # AttributeError(KeyError(...))
    e = e.args[0]
  text = str(e.args[0]) if e.args else str(e)
  missing = re.search(r"'([^']+)'", text)
  missing = missing.group(1) if missing else None
  bad = next((f"--config.{name}" for name in overridden if missing in name.split(".")),
             "a --config.* override")
  hint = re.search(r'Did you mean "([^"]+)"', text)
  hint = f' (did you mean "{hint.group(1)}"?)' if hint else ""
  return (f"{bad}: the config has no field {missing!r}{hint}; configs/base.py lists every "
          "field.")


def define_config_dict(argv, config, help_text: str) -> None:
  """``config_flags.DEFINE_config_dict("config", config)``, whose ``--config.*`` overrides
  are read while it is defined: one naming no field of ``config`` is one line."""
  from ml_collections import config_flags  # pylint: disable=import-outside-toplevel
  try:
    config_flags.DEFINE_config_dict("config", config, help_text)
  except (AttributeError, KeyError) as e:
    fail(unknown_override(argv, e))
  except (ValueError, TypeError) as e:   # a value config_flags cannot parse for the field
    fail(f"a --config.* override: {(str(e).splitlines() or [type(e).__name__])[0]}")


HELP_FLAGS = ("--help", "-help", "-?", "--helpshort", "--helpfull", "--helpxml")


def parse_flags(argv):
  """absl ``flags_parser`` for ``app.run``: parse errors become one line."""
  if "config" in flags.FLAGS:
    check_config_file(argv)
    # --helpfull: one line, not a YAML dump of the whole config
    flags.FLAGS["config"].default_as_str = ("'the config file / the workdir's config.json; "
                                            "--config.<field>=... overrides a field "
                                            "(configs/base.py lists them)'")
  try:
    parsed = flags.FLAGS(argv)
  except SystemExit as e:
    # absl's --help / --helpfull print the usage, then exit with status 1; asking for
    # help is not a failure (``python train.py --help && ...`` should go on).
    if e.code == 1 and any(a.split("=")[0] in HELP_FLAGS for a in argv[1:]):
      sys.exit(0)
    raise
  except flags.Error as e:
    text = str(e).splitlines()[0]
    if isinstance(e, flags.UnrecognizedFlagError) and "Did you mean" not in text:
      text += "; --help lists the flags."
    fail(text)
  except (AttributeError, KeyError) as e:
    if not config_overrides(argv):
      fail(f"--config={config_file(argv)}: get_config() failed: {type(e).__name__}: {e}")
    fail(unknown_override(argv, e))
  except Exception as e:  # noqa: BLE001 - the config file's own code failed
    fail(f"--config={config_file(argv)}: get_config() failed: {type(e).__name__}: "
         f"{(str(e).splitlines() or [''])[0]}")
  if "config" in flags.FLAGS:
    value = flags.FLAGS["config"].value
    failure = getattr(value, "_error", None)   # config_flags' stand-in for a failed load
    if failure is not None:
      fail(f"--config={config_file(argv)}: get_config() failed: "
           f"{type(failure).__name__}: {str(failure).splitlines()[0] if str(failure) else ''}")
  return parsed


class _DropRoutine(logging.Filter):
  """Drops warnings that say nothing to act on: orbax's three read-only notes on every
  restore (sample.py, diffusion.load), tfds's "OpenCV is not installed", and tfds's
  "has no dataset_info.json" for folders that hold no prepared dataset. Also drops, at
  any level, a record carrying a KeyboardInterrupt: a signal handler raises it wherever
  Python is, and a library that catches and logs it (orbax's "Save Finalize thread
  failed", with a traceback) would repeat what the command's own one line reports."""

  PATTERNS = ("read_only=True", "Given directory is read only", "OpenCV is not installed",
              "dataset_info.json")

  def filter(self, record: logging.LogRecord) -> bool:
    if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
      return False
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


INTERRUPTED = "interrupted (Ctrl-C); nothing more was written."


def interrupted_line(e: BaseException) -> str:
  """The line of an interrupt: what the step that was interrupted says it kept
  (:class:`Interrupted`'s message), else that nothing more was written."""
  return str(e) or INTERRUPTED.replace("Ctrl-C", signal_name(e))


def report(main_fn, errors) -> int:
  """``main_fn()``'s exit status (its return value; None: 0); an exception of the types in
  ``errors``, or Ctrl-C / SIGTERM, is one :func:`error` line and status 2. For commands
  whose ``main`` returns the status (and tests that call it in-process)."""
  try:
    return main_fn() or 0
  except errors as e:
    error(str(e))
  except KeyboardInterrupt as e:
    error(interrupted_line(e))
  return 2


def run_main(main_fn, errors) -> None:
  """Calls ``main_fn()``; exceptions of the types in ``errors`` print one line and exit 2
  at once (:func:`exit_quietly`: library threads stay silent); Ctrl-C / SIGTERM, and an
  error that left a compiled call running (``abandoned``: a second Ctrl-C in training),
  print one line and end the process at once with status 2 (a computation may still run
  in a library's threads: the interpreter's teardown would wait for it, or race it)."""
  try:
    status = main_fn() or 0
  except errors as e:
    error(str(e))
    if getattr(e, "abandoned", False):
      _flush_and_exit(2)
    exit_quietly(2)
  except KeyboardInterrupt as e:
    error(interrupted_line(e))
    _flush_and_exit(2)
  if status:
    exit_quietly(status)


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

"""One error type for bad user input, so the command lines can print it as one line.

Every check that rejects a config value, a missing file or a corrupt checkpoint
raises :class:`ConfigError` with a message that names the field (or file) and
says how to fix it. ``train.py`` and ``sample.py`` catch it and print
``error: <message>`` without a traceback, with exit status 2.
"""

import difflib
import os
import threading
from typing import Iterable


class ConfigError(ValueError):
  """Invalid configuration value, missing data or unreadable checkpoint."""


class Interrupted(KeyboardInterrupt):
  """Ctrl-C or SIGTERM as an exception. ``str()`` is the command's one line when a step
  says what it kept (empty: the command's own line); ``signal`` names the signal
  ('Ctrl-C', 'SIGTERM')."""

  def __init__(self, message: str = "", signal: str = "Ctrl-C"):
    super().__init__(message)
    self.signal = signal


def signal_name(e: BaseException) -> str:
  """'Ctrl-C' or 'SIGTERM': the signal an interrupt came from (Ctrl-C when not told)."""
  return getattr(e, "signal", "Ctrl-C")


def signal_again(signum: int) -> None:
  """Sends ``signum`` to this process again 50 ms later, from a timer thread: for a signal
  whose exception Python cannot raise where it arrived (a gc or weakref callback, a
  ``__del__``, which are over by then)."""
  threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()


class WorkdirError(ConfigError):
  """The workdir cannot be used: held by another process, or a write failed (disk full)."""


def check_choice(field: str, value, allowed: Iterable) -> None:
  """Raises ConfigError unless ``value`` is one of ``allowed``.

  Args:
    field: dotted config path shown to the user, e.g. ``diffusion.schedule``.
    value: the value found in the config.
    allowed: the accepted values (their order is kept in the message).
  """
  allowed = list(allowed)
  if value not in allowed:
    choices = ", ".join(repr(a) for a in allowed)
    raise ConfigError(f"{field}={value!r} is not valid; choose one of {choices}.")


def did_you_mean(name: str, options: Iterable[str]) -> str:
  """`` (did you mean 'x'?)`` for the closest of ``options``, or ``""``."""
  close = difflib.get_close_matches(str(name), list(options), n=1, cutoff=0.6)
  return f" (did you mean {close[0]!r}?)" if close else ""

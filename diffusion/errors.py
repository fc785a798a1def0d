"""One error type for bad user input, so the CLIs can print it as one line.

Every check that rejects a config value, a missing file or a corrupt checkpoint
raises :class:`ConfigError` with a message that names the field (or file) and
says how to fix it. ``train.py`` and ``sample.py`` catch it and print
``error: <message>`` without a traceback.
"""

from typing import Iterable


class ConfigError(ValueError):
  """Invalid configuration value, missing data or unreadable checkpoint."""


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


def check_positive(field: str, value, allow_zero: bool = False) -> None:
  """Raises ConfigError unless ``value`` is a number > 0 (or >= 0)."""
  ok = isinstance(value, (int, float)) and not isinstance(value, bool)
  ok = ok and (value >= 0 if allow_zero else value > 0)
  if not ok:
    bound = ">= 0" if allow_zero else "> 0"
    raise ConfigError(f"{field}={value!r} is not valid; it must be a number {bound}.")

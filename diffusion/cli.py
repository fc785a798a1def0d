"""Shared command-line plumbing for train.py and sample.py: one-line errors.

A bad flag (an unknown ``--config.a.b`` field, a value of the wrong type) or a
bad config value prints ``error: <one line>`` and exits with status 2, never a
traceback.
"""

import logging
import re
import sys

from absl import flags


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def parse_flags(argv):
  """absl ``flags_parser`` for ``app.run``: parse errors become one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(str(e).splitlines()[0])
  except (AttributeError, KeyError) as e:
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


def quiet_logs() -> None:
  """orbax (via absl) and jax (backend probing: "Unable to initialize backend
  'tpu'") log routine steps at INFO; keep the console for what matters."""
  for name in ("absl", "jax"):
    logging.getLogger(name).setLevel(logging.WARNING)


def run_main(main_fn, errors) -> None:
  """Calls ``main_fn()``; exceptions of the types in ``errors`` print one line, exit 2."""
  try:
    main_fn()
  except errors as e:
    _fail(str(e))

"""The one loader of config files: a Python file with ``get_config()``, by path.

``load(path, overrides)`` runs the file, calls its ``get_config()`` and applies dotted
overrides (``{"training.num_train_steps": 100}``); every way it can fail is one
ConfigError line naming the file: no such file, a syntax error (with its line), a
module that fails or has no ``get_config()``, or an override naming no field. Sweeps
(``sweep_<name>()`` beside ``get_config()``), reproductions and weight imports load
their config files here; ``train.py`` reads ``--config`` with absl's ``config_flags``
after :func:`check_file` has refused a missing or broken file in one line.
"""

import importlib.util
import itertools
import os
from types import ModuleType
from typing import Any, Mapping, Optional

import ml_collections

from diffusion.errors import ConfigError, did_you_mean

_COUNTER = itertools.count()   # a fresh module name per load (files may share a name)


def check_file(path: str, name: Optional[str] = None) -> None:
  """ConfigError unless ``path`` exists and compiles; ``name`` is how messages call it
  (default: the path; the command lines say ``--config=<path>``)."""
  name = name or path
  if not os.path.isfile(path):
    raise ConfigError(f"{name}: no such file; give a config file such as "
                      "configs/ddpm/digits.py.")
  try:
    with open(path, encoding="utf-8") as f:
      compile(f.read(), path, "exec")
  except SyntaxError as e:
    raise ConfigError(f"{name}: syntax error at line {e.lineno}: {e.msg}.") from None
  except (OSError, UnicodeDecodeError) as e:
    raise ConfigError(f"{name}: cannot be read ({e}).") from None


def first_line(e: BaseException) -> str:
  """``Type: first line of the message`` of an exception, for a one-line error."""
  return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"


def load_module(path: str, name: Optional[str] = None) -> ModuleType:
  """The config file at ``path`` run as a module (ConfigError, one line, if it cannot be)."""
  check_file(path, name)
  spec = importlib.util.spec_from_file_location(f"_config_file_{next(_COUNTER)}", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # noqa: BLE001 - the file's own code failed: one line
    raise ConfigError(f"{name or path}: failed to run: {first_line(e)}") from None
  return module


def load(path: str, overrides: Optional[Mapping[str, Any]] = None,
         name: Optional[str] = None) -> ml_collections.ConfigDict:
  """``get_config()`` of the config file at ``path``, with dotted ``overrides``."""
  module = load_module(path, name)
  get_config = getattr(module, "get_config", None)
  if get_config is None:
    raise ConfigError(f"{name or path}: defines no get_config().")
  try:
    config = get_config()
  except Exception as e:  # noqa: BLE001 - the file's own code failed: one line
    raise ConfigError(f"{name or path}: get_config() failed: {first_line(e)}") from None
  return apply_overrides(config, overrides or {})


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any],
                    label: str = "override") -> ml_collections.ConfigDict:
  """A copy of ``config`` with the dotted ``overrides`` (one-line error naming a bad key;
  ``label`` says what the key is, e.g. ``sweep key``)."""
  out = ml_collections.ConfigDict(config.to_dict())
  for key, value in overrides.items():
    node, parts = out, key.split(".")
    for i, part in enumerate(parts):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        options = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
        raise ConfigError(f"{label} {key!r}: the config has no field "
                          f"{'.'.join(parts[:i + 1])!r}{did_you_mean(part, options)}.")
      if i < len(parts) - 1:
        node = node[part]
    if isinstance(node[parts[-1]], tuple) and isinstance(value, list):
      value = tuple(value)
    try:
      node[parts[-1]] = value
    except TypeError as e:
      raise ConfigError(f"{label} {key}={value!r}: {str(e).splitlines()[0]}") from None
  return out

"""The one boundary for files from outside: every failure is one line naming the file.

A file the project reads but did not just write (released weights and their configs,
a diffusers ``scheduler_config.json``, a workdir's ``config.json``, a sweep's or a
reproduction's ledger, a metric file) may hold anything: another type where a mapping
belongs, a missing key, a string where a number belongs, NaN, a huge number, random
bytes. Its readers check what they use with :func:`get` (a field by its dotted name,
checked against an :class:`Expect`: "``PATH: model.num_classes is 'abc' (text);
expected an integer in [1, 100000]``"), and run inside :func:`reading`, which turns
whatever a parser or library raises on such bytes into the same kind of line
(``PATH: not a readable <what> (<Type>: <first line>)``). Both raise ConfigError (or
the reader's subclass of it), which every command prints as ``error: ...`` with exit
status 2; nothing is written before a file has been read whole.
"""

import contextlib
import dataclasses
import json
import math
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Type

from diffusion.errors import ConfigError

_MISSING = object()


def describe(value: Any, limit: int = 60, _depth: int = 0) -> str:
  """A value as a file spells it, with its kind: ``'abc' (text)``, ``[1, 2] (a list)``,
  ``true (a boolean)``, ``null``, ``NaN``, ``1e+300``, ``{...} (a mapping)``."""
  if isinstance(value, bool):
    return f"{json.dumps(value)} (a boolean)"
  if value is None:
    return "null (nothing)"
  if isinstance(value, str):
    text = repr(value if len(value) <= limit else value[:limit] + "...")
    return f"{text} (text)" if value else "'' (empty text)"
  if isinstance(value, int):
    return repr(value) if abs(value) < 10 ** 15 else f"{value:.6g}"
  if isinstance(value, float):
    return repr(value) if len(repr(value)) <= 24 else f"{value:.6g}"
  if isinstance(value, Mapping):
    return f"{{{', '.join(map(str, list(value)[:4]))}{', ...' if len(value) > 4 else ''}}} " \
           "(a mapping)"
  if isinstance(value, (list, tuple)):
    if _depth > 1:
      return f"[...] (a list of {len(value)})"
    head = ", ".join(describe(v, 12, _depth + 1).split(" (")[0] for v in value[:3])
    return f"[{head}{', ...' if len(value) > 3 else ''}] (a list of {len(value)})"
  return f"a {type(value).__name__}"


@dataclasses.dataclass(frozen=True)
class Expect:
  """What a field must be: ``text`` for the message, ``test`` on the value found."""
  text: str
  test: Callable[[Any], bool]


def _is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _bounds(low, high) -> str:
  if low is not None and high is not None:
    return f" in [{low}, {high}]"
  if low is not None:
    return f" >= {low}"
  return f" <= {high}" if high is not None else ""


def integer(low: Optional[int] = None, high: Optional[int] = None) -> Expect:
  """An integer (not a boolean, not 2.0) in [low, high]."""
  return Expect(f"an integer{_bounds(low, high)}",
                lambda v: _is_int(v) and (low is None or v >= low)
                and (high is None or v <= high))


def number(low: Optional[float] = None, high: Optional[float] = None,
           positive: bool = False) -> Expect:
  """A finite number (not a boolean) in [low, high]; ``positive``: > 0."""
  text = "a positive finite number" if positive else f"a finite number{_bounds(low, high)}"
  return Expect(text, lambda v: _is_number(v) and (not positive or v > 0)
                and (low is None or v >= low) and (high is None or v <= high))


def text(choices: Optional[Sequence[str]] = None) -> Expect:
  """A string (one of ``choices``)."""
  if choices is None:
    return Expect("text", lambda v: isinstance(v, str))
  return Expect(f"one of {', '.join(repr(c) for c in choices)}",
                lambda v: isinstance(v, str) and v in choices)


BOOLEAN = Expect("true or false", lambda v: isinstance(v, bool))
MAPPING = Expect("a mapping (key: value)", lambda v: isinstance(v, Mapping))


def numbers(length: Optional[int] = None) -> Expect:
  """A list of finite numbers (of ``length``)."""
  return Expect(f"a list of {length or ''}{' ' if length else ''}finite numbers",
                lambda v: isinstance(v, (list, tuple)) and all(map(_is_number, v))
                and (length is None or len(v) == length))


def optional(expect: Expect) -> Expect:
  """``expect``, or null."""
  return Expect(f"{expect.text} or null", lambda v: v is None or expect.test(v))


def get(tree: Any, dotted: str, source: str, expect: Expect, default: Any = _MISSING,
        error: Type[ConfigError] = ConfigError) -> Any:
  """The field ``dotted`` ("model.sigma_begin") of ``tree`` (nested mappings read from
  ``source``), checked by ``expect``; ``default`` when absent (if given).

  Raises ``error``: ``SOURCE: model is [1, 2] (a list of 2); expected a mapping``,
  ``SOURCE: model.sigma_begin is missing; expected a positive finite number`` or
  ``SOURCE: model.num_classes is 'abc' (text); expected an integer in [1, 100000]``."""
  parts = dotted.split(".")
  node = tree
  for i, key in enumerate(parts):
    if not isinstance(node, Mapping):
      where = ".".join(parts[:i]) or "the file"
      raise error(f"{source}: {where} is {describe(node)}; expected {MAPPING.text}.")
    if key not in node:
      if default is not _MISSING:
        return default
      raise error(f"{source}: {dotted} is missing; expected {expect.text}.")
    node = node[key]
  if not expect.test(node):
    raise error(f"{source}: {dotted} is {describe(node)}; expected {expect.text}.")
  return node


def first_line(e: BaseException, limit: int = 200) -> str:
  """``Type: first line of the message`` of an exception."""
  lines = str(e).strip().splitlines()
  return f"{type(e).__name__}: {(lines[0] if lines else '')[:limit]}".rstrip(": ")


@contextlib.contextmanager
def reading(source: str, what: str, error: Type[ConfigError] = ConfigError,
            fix: str = "", name_source: bool = False) -> Iterator[None]:
  """Any exception but a ConfigError (already one line) raised in the block while a
  file is read becomes ``error("SOURCE: not a readable WHAT (Type: first line)[; fix]")``;
  a ConfigError of the block gets ``fix`` too, and with ``name_source`` the prefix
  "SOURCE: " when its line does not name SOURCE (a checker that knows fields, not files).
  KeyboardInterrupt and SystemExit pass."""
  tail = f"; {fix}" if fix else ""
  try:
    yield
  except ConfigError as e:
    line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if name_source and source not in line:
      line = f"{source}: {line}"
    if line != str(e) or fix:
      raise type(e)(line.rstrip(".") + tail + ".") from None
    raise
  except (KeyboardInterrupt, SystemExit, GeneratorExit):
    raise
  except RecursionError:
    raise error(f"{source}: not a readable {what} (nested too deeply){tail}.") from None
  except Exception as e:  # noqa: BLE001 - the one boundary: any failure on outside bytes
    lines = str(e).strip().splitlines()
    if lines and source in lines[0]:        # the reader's own line, naming the file
      raise error(lines[0][:400].rstrip(".") + tail + ".") from None
    raise error(f"{source}: not a readable {what} ({first_line(e)}){tail}.") from None

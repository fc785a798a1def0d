"""The words a plug-in uses to declare the options it takes: a range rule and an option.

A sampler or a network declares each keyword option of its entry function (one-line
doc, allowed choices or a range rule); the default is the function's own keyword
default, read from its signature, so it is written once, where a notebook sees it
(EDM's ``edm_sampler(net, latents, num_steps=18, ...)``):

  def make_plan(process, *, num_steps=0, eta=0.0): ...
  OPTIONS = declare(make_plan, num_steps=Option("steps of the chain", rule=NONNEGATIVE),
                    eta=Option("noise", rule=NONNEGATIVE))

The config schema turns a set of such declarations into the fields of a section
(:mod:`diffusion.config.schema`). This module sits on the lowest floor, beside
``errors.py``, and names no plug-in: the plug-ins (samplers/, models/) may not import
the config package, which is above them and imports them to learn their options.
"""

import dataclasses
import inspect
import typing
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Rule:
  """A range rule on a number: ``test(value)`` must hold; ``text`` says what it must be."""
  test: Callable[[Any], bool]
  text: str


POSITIVE = Rule(lambda v: v > 0, "> 0")
NONNEGATIVE = Rule(lambda v: v >= 0, ">= 0")
AT_LEAST_1 = Rule(lambda v: v >= 1, ">= 1")
AT_LEAST_2 = Rule(lambda v: v >= 2, ">= 2")
OPEN_UNIT = Rule(lambda v: 0 < v < 1, "in (0, 1)")
HALF_OPEN_UNIT = Rule(lambda v: 0 <= v < 1, "in [0, 1)")
DECAY_RATE = Rule(lambda v: 0 < v <= 1, "in (0, 1]")

_NO_DEFAULT = object()


@dataclasses.dataclass(frozen=True)
class Option:
  """One keyword option: a one-line ``doc``, allowed ``choices`` or a range ``rule``
  (on each item of a tuple), its ``default`` and its ``kind`` (bool, int, float, str,
  or a ``Tuple[...]`` type). :func:`declare` fills in the default and the kind from the
  entry function's signature (its annotation, else the default's type).

  ``choices`` may be a mapping (its keys are the choices, looked up when a value is
  checked, so a registry dict stays the one list).
  """
  doc: str
  choices: Any = None
  rule: Optional[Rule] = None
  default: Any = _NO_DEFAULT
  kind: Any = None

  @property
  def has_default(self) -> bool:
    return self.default is not _NO_DEFAULT


def keyword_defaults(fn: Callable) -> Dict[str, Any]:
  """{name: default} of the keyword-only parameters of ``fn`` (its options)."""
  params = inspect.signature(fn).parameters.values()
  return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def declare(fn: Callable, **options: Option) -> Dict[str, Option]:
  """``options`` with their defaults (and types) taken from ``fn``'s keyword-only
  parameters.

  Every keyword-only parameter of ``fn`` must be declared and every declared option
  must be one, with a default (TypeError naming the difference otherwise): the
  function's signature is the one place a default is written. An option's ``kind`` is
  the parameter's annotation (else the default's type).
  """
  defaults = keyword_defaults(fn)
  name = getattr(fn, "__qualname__", repr(fn))
  if set(defaults) != set(options):
    raise TypeError(f"{name}: declared options {sorted(options)} are not its keyword-only "
                    f"parameters {sorted(defaults)}.")
  missing = [k for k, v in defaults.items() if v is inspect.Parameter.empty]
  if missing:
    raise TypeError(f"{name}: keyword options {missing} have no default.")
  hints = typing.get_type_hints(fn)
  return {k: dataclasses.replace(options[k], default=defaults[k],
                                 kind=options[k].kind or hints.get(k, type(defaults[k])))
          for k in defaults}


def union(declarations: Iterable[Tuple[str, Mapping[str, Option]]]
          ) -> Tuple[Dict[str, Option], Dict[str, Tuple[str, ...]]]:
  """The options of several plug-ins as one set, and who reads each.

  ``declarations``: (plug-in name, its options). An option read by several plug-ins
  must be declared equal by all (default, doc, choices, rule, kind); TypeError naming
  the option and the two plug-ins otherwise. Returns ({option: Option} in first-seen
  order, {option: names of the plug-ins that read it}).
  """
  merged: Dict[str, Option] = {}
  first: Dict[str, str] = {}
  readers: Dict[str, Tuple[str, ...]] = {}
  for owner, options in declarations:
    for key, option in options.items():
      if key in merged and merged[key] != option:
        raise TypeError(f"option {key!r} is declared differently by {first[key]!r} "
                        f"({merged[key]}) and {owner!r} ({option}); declare it once and "
                        "share it.")
      merged.setdefault(key, option)
      first.setdefault(key, owner)
      readers[key] = readers.get(key, ()) + (owner,)
  return merged, readers

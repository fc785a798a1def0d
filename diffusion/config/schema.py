"""The schema machinery: typed, frozen, checked sections (no domain word here).

A config is a tree of sections. Config files and the command line use an
``ml_collections.ConfigDict`` (so ``--config.optim.lr=1e-4`` works); the code reads
each section as a frozen dataclass, in the manner of vdm's ``VDMConfig(**config.model)``.
A :class:`Section` is declared with :func:`field` (default, one-line doc, choices or a
range rule), or derived from plug-ins' :class:`~diffusion.options.Option` declarations
(:func:`section`); :meth:`Section.parse` accepts a ConfigDict, a plain dict or the
dataclass: missing fields take their defaults, an unknown key fails at once with one
line naming it and the closest valid name, and every value is checked (type, allowed
values, range, finiteness) with an error that names the field.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Callable, ClassVar, Dict, Mapping, Optional, Tuple

import ml_collections
import numpy as np

from diffusion.errors import ConfigError, check_choice, did_you_mean
from diffusion.options import Option, Rule


def _is_int(v) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v) -> bool:
  return (isinstance(v, (int, float, np.integer, np.floating))
          and not isinstance(v, (bool, np.bool_)))


def _describe(kind) -> str:
  """English for a field type, used in error messages."""
  if kind is bool:
    return "True or False"
  if kind is int:
    return "an integer"
  if kind is float:
    return "a finite number"
  if kind is str:
    return "a string"
  inner = typing.get_args(kind)[0]
  if typing.get_origin(inner) is tuple:
    return "a tuple of tuples of numbers"
  return f"a tuple of {'integers' if inner is int else 'numbers'}"


def _coerce(path: str, value, kind, meta: Mapping[str, Any]):
  """``value`` as the field's type (lists become tuples), or ConfigError naming ``path``."""
  rule, choices = meta.get("rule"), meta.get("choices")

  def fail(what: str):
    raise ConfigError(f"{path}={value!r} is not valid; it must be {what}.")

  if choices is not None:
    check_choice(path, value, choices)
    return value
  if kind is bool:
    if not isinstance(value, (bool, np.bool_)):
      fail("True or False")
    return bool(value)
  if kind is str:
    if not isinstance(value, str):
      fail("a string")
    return value
  if kind in (int, float):
    ok = _is_int(value) if kind is int else (_is_number(value) and math.isfinite(value))
    if ok and rule is not None:
      ok = bool(rule.test(value))
    if not ok:
      fail(_describe(kind) + (f" {rule.text}" if rule else ""))
    return int(value) if kind is int else float(value)
  # Tuples: Tuple[int, ...], Tuple[float, ...] or Tuple[Tuple[float, ...], ...].
  inner = typing.get_args(kind)[0]
  if not isinstance(value, (list, tuple)):
    fail(_describe(kind) + (f", each {rule.text}" if rule else ""))
  items = []
  for v in value:
    if typing.get_origin(inner) is tuple:
      if not isinstance(v, (list, tuple)) or not all(_is_number(u) and math.isfinite(u)
                                                     for u in v):
        fail(_describe(kind))
      items.append(tuple(float(u) for u in v))
      continue
    ok = _is_int(v) if inner is int else (_is_number(v) and math.isfinite(v))
    if not ok or (rule is not None and not rule.test(v)):
      fail(_describe(kind) + (f", each {rule.text}" if rule else ""))
    items.append(int(v) if inner is int else float(v))
  return tuple(items)


_HINTS: Dict[type, Dict[str, Any]] = {}


def field_types(cls) -> Dict[str, Any]:
  if cls not in _HINTS:
    _HINTS[cls] = typing.get_type_hints(cls)
  return _HINTS[cls]


def mapping_items(cfg, path: str) -> Dict[str, Any]:
  """The key/value pairs of a ConfigDict, FrozenConfigDict or mapping."""
  if isinstance(cfg, (ml_collections.ConfigDict, ml_collections.FrozenConfigDict)):
    return {k: cfg[k] for k in cfg.keys()}
  if isinstance(cfg, Mapping):
    return dict(cfg)
  raise ConfigError(f"{path or 'config'} must be a ConfigDict, a dict or its dataclass; "
                    f"got {type(cfg).__name__}.")


class Section:
  """Mixin of every config dataclass: checked construction, ``parse`` and ``to_dict``.

  Subclasses are frozen dataclasses declared with :func:`field`; ``PATH`` is the
  section's dotted name used in messages (``diffusion``, ``eval.bpd``, or "" for a
  whole config). ``check`` holds the rules between fields of the section.
  """
  PATH: ClassVar[str] = ""

  def __post_init__(self):
    hints = field_types(type(self))
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      kind = hints[f.name]
      if isinstance(kind, type) and issubclass(kind, Section):
        value = kind.parse(value)
      else:
        value = _coerce(self._path(f.name), value, kind, f.metadata)
      object.__setattr__(self, f.name, value)
    self.check()

  def check(self) -> None:
    """Rules between the fields of this section (ConfigError naming a field)."""

  @classmethod
  def _path(cls, name: str) -> str:
    return f"{cls.PATH}.{name}" if cls.PATH else name

  @classmethod
  def base_for(cls, values: Mapping[str, Any]) -> "Section":
    """The defaults that fill in fields missing from ``values`` (a hook for presets)."""
    del values
    return cls()

  @classmethod
  def rebase(cls, base: "Section", values: Mapping[str, Any]) -> "Section":
    """``base`` adjusted to ``values`` (a hook: a changed dataset brings its own size)."""
    del values
    return base

  @classmethod
  def parse(cls, cfg=None, base: Optional["Section"] = None):
    """The section from a ConfigDict, a dict, an instance or None (all defaults).

    Missing fields come from ``base`` (default: :meth:`base_for`); an unknown key
    raises ConfigError naming it and the closest field.
    """
    if isinstance(cfg, cls):
      return cfg
    if isinstance(cfg, Section):
      raise ConfigError(f"{cls.PATH or 'config'} got a {type(cfg).__name__}; expected "
                        f"{cls.__name__}.")
    values = {} if cfg is None else mapping_items(cfg, cls.PATH)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
      if key not in names:
        raise ConfigError(
            f"{cls._path(key)} is not a config field{did_you_mean(key, names)}; the "
            f"{cls.PATH or 'top level'} section has: {', '.join(names)}.")
    base = cls.base_for(values) if base is None else cls.rebase(base, values)
    sub = {}
    for f in dataclasses.fields(cls):
      kind = field_types(cls)[f.name]
      if f.name in values and isinstance(kind, type) and issubclass(kind, Section):
        sub[f.name] = kind.parse(values.pop(f.name), base=getattr(base, f.name))
    return dataclasses.replace(base, **values, **sub)

  def replace(self, **changes):
    """A copy with ``changes`` applied (checked like a new section)."""
    return dataclasses.replace(self, **changes)

  @classmethod
  def with_changes(cls, changes: Mapping[str, Any]) -> "Section":
    """The defaults with some sub-sections' fields changed: ``changes`` is
    ``{sub-section: {field: value}}`` (a preset); other keys are ignored."""
    types = field_types(cls)
    return cls(**{f.name: types[f.name](**changes[f.name]) for f in dataclasses.fields(cls)
                  if f.name in changes and isinstance(types[f.name], type)
                  and issubclass(types[f.name], Section)})

  def to_dict(self) -> Dict[str, Any]:
    """Plain nested dict of the section (tuples stay tuples)."""
    out = {}
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      out[f.name] = value.to_dict() if isinstance(value, Section) else value
    return out

  @classmethod
  def field_docs(cls) -> Dict[str, str]:
    """{dotted path: doc} of every field, sub-sections included (README reference)."""
    out = {}
    for f in dataclasses.fields(cls):
      kind = field_types(cls)[f.name]
      if isinstance(kind, type) and issubclass(kind, Section):
        out.update(kind.field_docs())
      else:
        out[cls._path(f.name)] = f.metadata.get("doc", "")
    return out




def field(default, doc: str, *, choices=None, rule: Optional[Rule] = None):
  """A config field: its default, a one-line ``doc``, allowed ``choices`` (a tuple, or a
  registry dict whose keys are the choices) or a range ``rule``."""
  return dataclasses.field(default=default,
                           metadata={"doc": doc, "choices": choices, "rule": rule})


def fail(path: str, value, why: str):
  """ConfigError ``<path>=<value> is not valid; <why>.``"""
  raise ConfigError(f"{path}={value!r} is not valid; {why}.")


def option_fields(options: Mapping[str, Option], docs: Optional[Mapping[str, str]] = None):
  """``(name, type, dataclasses.field)`` of each declared option, for
  ``dataclasses.make_dataclass``; ``docs`` may replace an option's doc (e.g. prefixed
  with the plug-ins that read it)."""
  docs = docs or {}
  undeclared = [name for name, o in options.items() if not o.has_default or o.kind is None]
  if undeclared:
    raise TypeError(f"options {undeclared} have no default or type: give them through "
                    "options.declare(entry, ...).")
  return [(name, o.kind, field(o.default, docs.get(name, o.doc), choices=o.choices,
                               rule=o.rule))
          for name, o in options.items()]


def section(name: str, path: str, doc: str, fields, *, check: Optional[Callable] = None,
            bases: Tuple[type, ...] = ()) -> type:
  """A frozen :class:`Section` dataclass ``name`` made from ``fields`` (as
  :func:`option_fields` gives them, or ``(name, Section subclass, default instance)``
  for a sub-section); ``check`` becomes its rule between fields."""
  namespace: Dict[str, Any] = {"__doc__": doc, "PATH": path}
  if check is not None:
    namespace["check"] = check
  cls = dataclasses.make_dataclass(name, list(fields), bases=bases + (Section,),
                                   namespace=namespace, frozen=True)
  cls.__module__ = "diffusion.config"   # where callers find it (pickling, repr)
  return cls


def readers_note(readers: Tuple[str, ...], everyone: Tuple[str, ...]) -> str:
  """Who reads an option, as a doc prefix: "" when all do, "ddim: " for one, "all but
  analytic: " when most do."""
  if set(readers) >= set(everyone):
    return ""
  others = [n for n in everyone if n not in readers]
  if len(others) < len(readers) and len(others) <= 2:
    return f"all but {', '.join(others)}: "
  return f"{', '.join(readers)}: "

"""Search spaces: a distribution per config field, in a config file or on the command line.

A config file may define ``search_<name>()`` functions beside ``get_config()`` and its
``sweep_<name>()`` grids, returning a dict of the same dotted paths as ``--config.x=y``:

  from diffusion.sweeps import choice, loguniform, uniform, randint

  def search_lr_ema():
    return {"optim.lr": loguniform(1e-4, 1e-2),
            "training.ema_decay": choice([0.99, 0.995, 0.999]),
            "optim.warmup_steps": randint(0, 500)}

On the command line, ``--search="optim.lr=loguniform(1e-4,1e-2);training.seed=choice(0,1,2)"``
is the same space. The four distributions:

  choice(v1, v2, ...)    one of the values, each equally likely (``choice([v1, v2])`` too);
                         numbers, strings, booleans or tuples of them
  uniform(low, high)     a float, uniform on [low, high]
  loguniform(low, high)  a float whose logarithm is uniform on [log low, log high]; 0 < low
  randint(low, high)     an integer in low..high, both included (as Python's
                         ``random.randint``; Ray Tune's ``randint`` excludes ``high``)

A bad space is one line naming the key and what to write instead (:func:`check_space`):
an unknown distribution, an empty or inverted range, a bound that is not a finite number, a
non-positive bound of a log range, a value that is not a distribution. Whether each key is
a config field, and whether its values are valid there, is checked against the config by
the search before anything trains. Optuna is imported only by :meth:`to_optuna`.
"""

import ast
import dataclasses
import math
from typing import Any, Dict, List, Optional, Tuple

from diffusion.config import files
from diffusion.errors import ConfigError, did_you_mean
from diffusion.sweeps.grid import format_value

EXAMPLE = "--search=\"optim.lr=loguniform(1e-4,1e-2);training.ema_decay=choice(0.99,0.999)\""


def _is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def _literal(v) -> bool:
  """A value a choice may hold: None, a number, a string, a boolean, or a tuple/list of them."""
  if isinstance(v, (tuple, list)):
    return all(_literal(x) for x in v)
  return v is None or isinstance(v, (bool, int, float, str))


class Distribution:
  """A distribution over one config field's values."""
  name = ""

  def problem(self) -> Optional[str]:
    """What is wrong with the arguments (a phrase with the fix), or None."""
    raise NotImplementedError

  def to_optuna(self):
    """The Optuna distribution drawing this field."""
    raise NotImplementedError

  def from_optuna(self, value):
    """The config value of an Optuna draw."""
    return value

  def corners(self) -> List[Any]:
    """Values that bound the space (the ends of a range, every choice): checked against the
    config before anything trains."""
    raise NotImplementedError

  def __eq__(self, other):
    return type(self) is type(other) and str(self) == str(other)

  def __hash__(self):
    return hash(str(self))

  def __repr__(self):
    return str(self)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Choice(Distribution):
  """One of ``values``, each equally likely."""
  values: Tuple[Any, ...]
  name = "choice"

  def problem(self) -> Optional[str]:
    if not self.values:
      return "choice() has no values; give at least one, e.g. choice(0.99, 0.999)"
    for v in self.values:
      if not _literal(v):
        return (f"choice value {v!r} is not a number, string, boolean or tuple of them; "
                "give literal values")
      if isinstance(v, float) and not math.isfinite(v):
        return f"choice value {v!r} is not a finite number; give finite values"
    keys = [_choice_key(v) for v in self.values]
    for i, k in enumerate(keys):
      if k in keys[:i]:
        return f"choice() holds {self.values[i]!r} twice; give each value once"
    return None

  def _encoded(self) -> List[Any]:
    # Optuna's categorical choices are None, bool, int, float or str: a tuple (a channel
    # multiplier) is drawn as its text and mapped back by position.
    return [v if (v is None or isinstance(v, (bool, int, float, str))) else format_value(v)
            for v in self.values]

  def to_optuna(self):
    import optuna  # pylint: disable=import-outside-toplevel  # only searches need it
    return optuna.distributions.CategoricalDistribution(self._encoded())

  def from_optuna(self, value):
    return self.values[self._encoded().index(value)]

  def corners(self) -> List[Any]:
    return list(self.values)

  def __str__(self):
    return f"choice({', '.join(_literal_text(v) for v in self.values)})"


def _choice_key(v):
  """Equality of choice values as a config sees them (1 and True differ; 1 and 1.0 do not)."""
  if isinstance(v, (list, tuple)):
    return ("seq",) + tuple(_choice_key(x) for x in v)
  return (type(v) is bool, v)


def _literal_text(v) -> str:
  if isinstance(v, float):
    return f"{v:g}"
  if isinstance(v, list):
    v = tuple(v)
  return repr(v)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class _Range(Distribution):
  low: Any
  high: Any
  integer = False
  log = False

  def problem(self) -> Optional[str]:
    for bound in (self.low, self.high):
      if self.integer and not (isinstance(bound, int) and not isinstance(bound, bool)):
        return f"{self} needs integer bounds, got {bound!r}; e.g. {self.name}(0, 500)"
      if not _is_number(bound) or not math.isfinite(bound):
        return f"{self} needs finite numbers as bounds, got {bound!r}"
    if self.log and min(self.low, self.high) <= 0:
      return (f"{self} has a non-positive bound; a log range needs 0 < low, e.g. "
              f"loguniform(1e-4, 1e-2), or use uniform()")
    if self.low > self.high:
      return (f"{self} is inverted (low {_literal_text(self.low)} > high "
              f"{_literal_text(self.high)}); write {self.name}({_literal_text(self.high)}, "
              f"{_literal_text(self.low)})")
    if self.low == self.high and not self.integer:
      return (f"{self} is empty (low = high); a fixed value is set with --config.KEY=VALUE "
              "or choice(VALUE)")
    return None

  def corners(self) -> List[Any]:
    if self.integer:
      return [self.low, self.high]
    return [float(self.low), float(self.high)]

  def __str__(self):
    return f"{self.name}({_literal_text(self.low)}, {_literal_text(self.high)})"


class Uniform(_Range):
  """A float uniform on [low, high]."""
  name = "uniform"

  def to_optuna(self):
    import optuna  # pylint: disable=import-outside-toplevel
    return optuna.distributions.FloatDistribution(float(self.low), float(self.high))


class LogUniform(_Range):
  """A float whose logarithm is uniform on [log low, log high]."""
  name = "loguniform"
  log = True

  def to_optuna(self):
    import optuna  # pylint: disable=import-outside-toplevel
    return optuna.distributions.FloatDistribution(float(self.low), float(self.high), log=True)


class RandInt(_Range):
  """An integer in low..high, both included."""
  name = "randint"
  integer = True

  def to_optuna(self):
    import optuna  # pylint: disable=import-outside-toplevel
    return optuna.distributions.IntDistribution(int(self.low), int(self.high))

  def from_optuna(self, value):
    return int(value)


def choice(*values) -> Choice:
  """One of the values: ``choice(0.99, 0.999)`` or ``choice([0.99, 0.999])``."""
  if len(values) == 1 and isinstance(values[0], list):
    values = tuple(values[0])
  return Choice(tuple(values))


def uniform(low, high) -> Uniform:
  """A float uniform on [low, high]."""
  return Uniform(low, high)


def loguniform(low, high) -> LogUniform:
  """A float log-uniform on [low, high], 0 < low."""
  return LogUniform(low, high)


def randint(low, high) -> RandInt:
  """An integer in low..high, both included."""
  return RandInt(low, high)


# Plain dict, the name a space writes -> its constructor (written out here only).
DISTRIBUTIONS = {"choice": choice, "uniform": uniform, "loguniform": loguniform,
                 "randint": randint}

Space = Dict[str, Distribution]


def check_space(space, where: str) -> Space:
  """The space as a dict of dotted keys to distributions, or ConfigError (one line,
  naming ``where`` and the key) for the first bad entry."""
  if not isinstance(space, dict) or not space:
    raise ConfigError(f"{where}: a search space is a non-empty dict of dotted config keys to "
                      f"distributions (choice, loguniform, uniform, randint); got "
                      f"{type(space).__name__ if space else 'nothing'}.")
  for key, dist in space.items():
    if not isinstance(key, str) or not key.strip():
      raise ConfigError(f"{where}: the key {key!r} is not a dotted config path like optim.lr.")
    if not isinstance(dist, Distribution):
      raise ConfigError(f"{where}: {key} is {dist!r}, not a distribution; write e.g. "
                        f"{key}=choice({_literal_text(dist) if _literal(dist) else '...'}) "
                        "(or fix it with --config.KEY=VALUE).")
    problem = dist.problem()
    if problem:
      raise ConfigError(f"{where}: {key}: {problem}.")
  return dict(space)


def parse_space(text: str) -> Space:
  """``"a.b=loguniform(1e-4,1e-2);c.d=choice(0,1)"`` -> {key: distribution}."""
  where = f"--search={text!r}"
  space: Space = {}
  for part in filter(None, (p.strip() for p in text.split(";"))):
    key, sep, expr = (s.strip() for s in part.partition("="))
    if not sep or not key or not expr:
      raise ConfigError(f"{where}: {part!r} is not key=distribution(...); write e.g. {EXAMPLE}.")
    if key in space:
      raise ConfigError(f"{where}: {key} is given twice; give each key once.")
    space[key] = _parse_distribution(expr, f"{where}: {key}")
  if not space:
    raise ConfigError(f"{where} names no key; write e.g. {EXAMPLE}.")
  return check_space(space, where)


def _parse_distribution(expr: str, where: str) -> Distribution:
  """One ``name(arg, ...)`` of literal arguments."""
  try:
    node = ast.parse(expr, mode="eval").body
  except SyntaxError:
    node = None
  if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
    raise ConfigError(f"{where}={expr!r} is not a distribution call; write one of "
                      f"{', '.join(n + '(...)' for n in DISTRIBUTIONS)}, e.g. {EXAMPLE}.")
  name = node.func.id
  if name not in DISTRIBUTIONS:
    raise ConfigError(f"{where}: unknown distribution {name!r}{did_you_mean(name, DISTRIBUTIONS)}; "
                      f"choose {', '.join(DISTRIBUTIONS)}.")
  if node.keywords:
    raise ConfigError(f"{where}: give {name}'s arguments by position, e.g. {name}(1e-4, 1e-2).")
  args = []
  for arg in node.args:
    try:
      args.append(ast.literal_eval(arg))
    except ValueError:
      text = ast.get_source_segment(expr, arg) or "?"
      if text.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
        args.append(float(text))   # a number, so that the check can say it is not finite
      else:
        raise ConfigError(f"{where}: {name}'s argument {text} is not a literal value "
                          "(a number, string, boolean or tuple).") from None
  if name != "choice" and len(args) != 2:
    raise ConfigError(f"{where}: {name} takes two bounds (low, high); got {len(args)} "
                      "argument(s).")
  return DISTRIBUTIONS[name](*args)


def load_space(config_file: str, spec: str) -> Space:
  """The space of ``--search=spec``: a ``search_<spec>()`` of the config file, or a space
  written ``key=dist(...);key2=...``."""
  if "=" in spec:
    return parse_space(spec)
  module = files.load_module(config_file)
  names = sorted(n[len("search_"):] for n in dir(module) if n.startswith("search_"))
  if spec not in names:
    listed = ", ".join(names) or "none"
    raise ConfigError(f"--search={spec}: {config_file} defines no search_{spec}()"
                      f"{did_you_mean(spec, names)}; it defines: {listed}. A space is "
                      f"written on the command line as {EXAMPLE}.")
  return check_space(getattr(module, f"search_{spec}")(), f"search_{spec}() of {config_file}")


def describe(space: Space) -> Dict[str, str]:
  """{key: "loguniform(0.0001, 0.01)"}: the space as the ledger stores and compares it."""
  return {k: str(v) for k, v in space.items()}

"""What a search is asked to do (``train.py --search ...``), and the checks between its
flags.

:class:`SearchSettings` holds the command line's search flags; :func:`check_flags` refuses a
conflict in one line each (``error: ...``, exit 2) before anything trains or any folder is
made; :func:`check_against_config` does the same for the rules that need the config and the
search space (a loss metric over a space that changes what the loss measures, seeds as an
axis twice, ASHA rungs beyond the run). Nothing here imports Optuna.
"""

import dataclasses
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from diffusion import evals, trees
from diffusion.errors import ConfigError
from diffusion.evals import heldout_loss
from diffusion.sweeps.summary import LOSS_DEFINING

class MetricNotLogged(ConfigError):
  """The search's metric did not appear by the step every logged metric has appeared."""


SEARCHERS = ("random", "quasirandom", "tpe")
SCHEDULERS = ("none", "asha", "pbt")
METRIC_MODES = ("min", "max")
# The default metric compares across trials: the family's loss on one fixed set of
# (x0, t, eps) drawn once per search (diffusion.evals.heldout_loss).
DEFAULT_METRIC = "eval/heldout_loss"
# Metrics that are the training loss, on a batch or on the held-out set: they mean different
# things when a trial changes a field of summary.LOSS_DEFINING.
LOSS_METRICS = ("loss", "mse", "vb", DEFAULT_METRIC)
SEED_KEY = "training.seed"

# Flags that only a search reads, and those a grid reads too (train.py's names).
SEARCH_ONLY = ("trials", "searcher", "asha_min_steps", "asha_reduction", "seeds_top",
               "population")
SWEEP_OR_SEARCH = ("scheduler", "metric", "metric_mode", "seeds", "pbt_interval",
                   "pbt_quantile", "pbt_resample")
PBT_FLAGS = ("pbt_interval", "pbt_quantile", "pbt_resample")
ASHA_FLAGS = ("asha_min_steps", "asha_reduction")


@dataclasses.dataclass(frozen=True)
class SearchSettings:
  """The search flags of ``train.py`` (defaults as the flags'), in their units.

  Attributes:
    trials: trials the searcher draws (>= 1).
    searcher: random | quasirandom (scrambled Sobol) | tpe.
    scheduler: none | asha | pbt.
    metric: the logged metric that judges trials (``eval/<evaluator>/<key>`` is read as
      the logged ``eval/<key>``: :func:`diffusion.evals.logged_name`).
    metric_mode: min | max (None: max for the metrics evaluators declare maximised, else
      min).
    seed: the searcher's seed (and the held-out set's); the config's training.seed.
    asha_min_steps: the first rung, in training steps (None: num_train_steps / η²
      rounded down to a multiple of training.log_every); asha_reduction: η >= 2.
    seeds: K training seeds per configuration (1 = no repeats); seeds_top: a search
      repeats its best M configurations (None: 3).
    pbt_interval (steps, None: training.log_every), pbt_quantile in (0, 0.5],
      pbt_resample in [0, 1]: population-based training.
  """
  trials: int = 16
  searcher: str = "quasirandom"
  scheduler: str = "none"
  metric: str = DEFAULT_METRIC
  metric_mode: Optional[str] = None
  seed: int = 0
  asha_min_steps: Optional[int] = None
  asha_reduction: int = 3
  seeds: int = 1
  seeds_top: Optional[int] = None
  pbt_interval: Optional[int] = None
  pbt_quantile: float = 0.25
  pbt_resample: float = 0.25

  def __post_init__(self):
    # --metric=eval/classifier_fid/cfid names the metric logged as eval/cfid.
    object.__setattr__(self, "metric", evals.logged_name(self.metric))

  def mode(self, maximised: Iterable[str]) -> str:
    """min or max: the flag's, else max for a metric an evaluator declares maximised."""
    if self.metric_mode is not None:
      return self.metric_mode
    return "max" if self.metric in tuple(maximised) else "min"

  def top(self) -> int:
    """How many of a search's best configurations are repeated over seeds."""
    return 3 if self.seeds_top is None else self.seeds_top


def check_flags(settings: SearchSettings, *, search: Optional[str], sweep: Optional[str],
                sweep_mode: str, given: Sequence[str]) -> None:
  """The flag conflicts of a ``train.py`` command, each one line (ConfigError).

  Args:
    settings: the search flags' values.
    search, sweep: ``--search`` and ``--sweep`` (None when not given).
    sweep_mode: ``--sweep_mode``.
    given: names of the flags set on the command line (their defaults do not conflict).
  """
  given = set(given)
  if search is not None and sweep is not None:
    raise ConfigError("give --sweep (a grid: every point trained) or --search (trials drawn "
                      "from a space), not both.")
  if search is None and sweep is None:
    stray = [f for f in SEARCH_ONLY + SWEEP_OR_SEARCH if f in given]
    if stray:
      raise ConfigError(f"--{stray[0]} applies to a --search (or a --sweep); this command "
                        "trains a single run. Add --search=NAME (or drop the flag).")
    return
  if search is None:
    stray = [f for f in SEARCH_ONLY if f in given]
    if stray:
      raise ConfigError(f"--{stray[0]} applies to a --search, not to a --sweep grid (which "
                        "trains every point).")
    stray = [f for f in ("metric", "metric_mode") if f in given]
    if stray and settings.scheduler != "pbt":
      raise ConfigError(f"--{stray[0]} judges the trials of a --search (or PBT's members); a "
                        "--sweep grid's summary ranks its points by their eval/* metrics.")
  if search is not None and not search.strip():
    raise ConfigError("--search is empty; name a search_<NAME>() of the config file or write "
                      "a space, e.g. --search=\"optim.lr=loguniform(1e-4,1e-2)\".")
  _check_choice("searcher", settings.searcher, SEARCHERS)
  _check_choice("scheduler", settings.scheduler, SCHEDULERS)
  if settings.metric_mode is not None:
    _check_choice("metric_mode", settings.metric_mode, METRIC_MODES)
  if settings.trials < 1:
    raise ConfigError(f"--trials={settings.trials}: a search needs at least one trial; give "
                      "--trials=N with N >= 1.")
  if not settings.metric.strip():
    raise ConfigError(f"--metric is empty; name a logged metric, e.g. --metric={DEFAULT_METRIC}.")
  scheduler = settings.scheduler
  if scheduler == "pbt" and sweep_mode == "sequential":
    raise ConfigError("--scheduler=pbt trains its members side by side, exploiting and "
                      "exploring between steps: use --sweep_mode=vmap (one population) or "
                      "--sweep_mode=ray (Ray Tune's PBT), not sequential.")
  if scheduler == "pbt" and search is None and sweep_mode == "ray":
    raise ConfigError("--scheduler=pbt with --sweep_mode=ray is Ray Tune's PBT over the "
                      "trials of a --search; a --sweep grid's PBT runs inside one population: "
                      "use --sweep_mode=vmap.")
  if "population" in given and sweep_mode != "vmap":
    raise ConfigError(f"--population sets how many trials train as one population in "
                      f"--sweep_mode=vmap (the mode is {sweep_mode}).")
  if scheduler == "asha" and search is None:
    raise ConfigError("--scheduler=asha stops the worse trials of a --search early; a --sweep "
                      "grid trains every point (use --search, or drop --scheduler).")
  for name in ASHA_FLAGS:
    if name in given and scheduler != "asha":
      raise ConfigError(f"--{name} applies to --scheduler=asha (the scheduler is {scheduler}).")
  for name in PBT_FLAGS:
    if name in given and scheduler != "pbt":
      raise ConfigError(f"--{name} applies to --scheduler=pbt (the scheduler is {scheduler}).")
  if settings.asha_reduction < 2:
    raise ConfigError(f"--asha_reduction={settings.asha_reduction}: ASHA keeps the best 1/η "
                      "of the trials at each rung; η must be at least 2 (default 3).")
  if settings.asha_min_steps is not None and settings.asha_min_steps < 1:
    raise ConfigError(f"--asha_min_steps={settings.asha_min_steps}: the first rung is a number "
                      "of training steps >= 1.")
  if settings.pbt_interval is not None and settings.pbt_interval < 1:
    raise ConfigError(f"--pbt_interval={settings.pbt_interval}: give a number of steps >= 1.")
  if not 0.0 < settings.pbt_quantile <= 0.5:
    raise ConfigError(f"--pbt_quantile={settings.pbt_quantile}: the bottom and top quantiles "
                      "must not overlap; give a fraction in (0, 0.5] (default 0.25).")
  if not 0.0 <= settings.pbt_resample <= 1.0:
    raise ConfigError(f"--pbt_resample={settings.pbt_resample}: a probability in [0, 1] "
                      "(default 0.25).")
  if settings.seeds < 1:
    raise ConfigError(f"--seeds={settings.seeds}: give the number of training seeds per "
                      "configuration, K >= 1.")
  if settings.seeds_top is not None:
    if settings.seeds_top < 1:
      raise ConfigError(f"--seeds_top={settings.seeds_top}: give how many of the best "
                        "configurations to repeat, M >= 1.")
    if settings.seeds == 1:
      raise ConfigError("--seeds_top repeats the best configurations over --seeds=K seeds; "
                        "give --seeds=K with K >= 2.")
    if settings.seeds_top > settings.trials:
      raise ConfigError(f"--seeds_top={settings.seeds_top} is more than --trials="
                        f"{settings.trials}; give at most the number of trials.")


def _check_choice(flag: str, value: str, options: Sequence[str]) -> None:
  if value not in options:
    raise ConfigError(f"--{flag}={value!r} is not valid; choose one of {', '.join(options)}.")


def loss_defining_keys(keys: Iterable[str], config: Mapping[str, Any]) -> List[str]:
  """The keys (of a space or a grid) that change what the training loss measures for this
  config (:data:`diffusion.sweeps.summary.LOSS_DEFINING`: a field or a section holding
  one, where it matters)."""
  flat = trees.flatten(config, sep=".") if config else {}
  out = []
  for key in keys:
    fields = [f for f in LOSS_DEFINING if f == key or f.startswith(key + ".")]
    if any(LOSS_DEFINING[f] is None or LOSS_DEFINING[f](flat) for f in fields):
      out.append(key)
  return out


def check_against_config(settings: SearchSettings, keys: Sequence[str],
                         config: Mapping[str, Any], *, search: bool) -> None:
  """The rules between the flags, the swept keys and the config (a plain dict of the whole
  config), each one line (ConfigError), before anything trains.

  Args:
    keys: the keys the search space (or the grid) draws.
    search: a search (True) or a grid (False).
  """
  changing = loss_defining_keys(keys, config)
  metric = settings.metric
  if search and changing and (metric in LOSS_METRICS or metric.startswith(DEFAULT_METRIC)):
    raise ConfigError(
        f"--metric={metric} is a loss, and the space changes {', '.join(changing)}, which "
        f"change{'s' if len(changing) == 1 else ''} what the loss measures: trials would be "
        "ranked on different scales. Rank by an eval/* metric that does not depend on it, "
        "e.g. --metric=eval/cfid with --config.eval.classifier_fid.every=N, or --metric="
        "eval/bpd with --config.eval.bpd.every=N.")
  if settings.seeds > 1 and SEED_KEY in keys:
    raise ConfigError(f"--seeds={settings.seeds} repeats every configuration over seeds, and "
                      f"the {'space' if search else 'grid'} already draws {SEED_KEY}; drop one "
                      "of them.")
  training = config.get("training", {})
  total, log_every = training.get("num_train_steps"), training.get("log_every")
  if settings.scheduler == "asha" and settings.asha_min_steps is not None and total:
    if settings.asha_min_steps >= total:
      raise ConfigError(f"--asha_min_steps={settings.asha_min_steps} is not before the end of "
                        f"a trial (training.num_train_steps={total}): no rung would stop "
                        "anything; give fewer steps.")
    if log_every and settings.asha_min_steps % log_every:
      suggestion = max(log_every, settings.asha_min_steps // log_every * log_every)
      raise ConfigError(f"--asha_min_steps={settings.asha_min_steps} is not a multiple of "
                        f"training.log_every={log_every}, when trials report their metric; "
                        f"give e.g. {suggestion}.")


def asha_min_steps(settings: SearchSettings, num_train_steps: int, log_every: int) -> int:
  """The first rung: ``--asha_min_steps``, else num_train_steps / η² rounded down to a
  multiple of log_every (at least one log interval), so that rungs fall at about 1/η², 1/η
  and the whole of a trial."""
  if settings.asha_min_steps is not None:
    return settings.asha_min_steps
  eta = settings.asha_reduction
  return max(log_every, num_train_steps // eta ** 2 // log_every * log_every)


def rungs(min_steps: int, reduction: int, num_train_steps: int) -> List[int]:
  """ASHA's rungs, min_steps · η^k for k = 0, 1, ... before the end of a trial (steps)."""
  out, step = [], int(min_steps)
  while step < num_train_steps:
    out.append(step)
    step *= int(reduction)
  return out


def definition(settings: SearchSettings, space: Dict[str, str], mode: str,
               first_rung: Optional[int]) -> Dict[str, Any]:
  """What the ledger stores and compares of a search (ledger.SEARCH_DEFINITION, and the
  number of trials, which may change between runs)."""
  return {"space": dict(space), "searcher": settings.searcher, "scheduler": settings.scheduler,
          "metric": settings.metric, "metric_mode": mode, "seed": settings.seed,
          "asha_min_steps": first_rung if settings.scheduler == "asha" else None,
          "asha_reduction": settings.asha_reduction if settings.scheduler == "asha" else None,
          "seeds": settings.seeds, "seeds_top": settings.top() if settings.seeds > 1 else None,
          "trials": settings.trials}


def heldout_loss_logged(cfg, metric: str, seed: int):
  """``cfg`` (a ConfigDict) judged by ``metric``: for the held-out loss, its evaluator on at
  every log step and on the search's own set (every trial and every member scores the same
  examples; :func:`diffusion.evals.heldout_loss.log_with_training`)."""
  if metric.startswith(DEFAULT_METRIC):
    heldout_loss.log_with_training(cfg, seed)
  return cfg

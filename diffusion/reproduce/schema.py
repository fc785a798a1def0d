"""The registry's vocabulary: a baseline is a paper's table cell or figure, what to run
for it at each budget, and how its numbers are judged; an outcome is what its experiment
measured.

Entries are plain data, each in its paper's module (``diffusion/reproduce/papers/``), and
name the experiment FUNCTION that produces their numbers (``Baseline.experiment``).
"""

import dataclasses
import math
from typing import Any, Callable, Dict, List, Optional, Tuple

TIERS = ("cpu", "gpu", "paper", "weights")   # weights: evaluate a released model


@dataclasses.dataclass(frozen=True)
class Metric:
  """One number of a baseline: the paper's value, our acceptance band and why.

  ``band`` is (lo, hi), inclusive; a metric with ``claim`` set is a statement (an
  ordering, a pattern) whose measured value is 1.0 when it holds, and its band (1, 1).
  """
  name: str
  paper: Any                    # the published value (a number or a phrase)
  band: Tuple[float, float]
  why: str                      # one line: what the band allows and why
  protocol: str                 # samples, reference split, network, seeds...
  claim: Optional[str] = None

  def judge(self, ours: Optional[float]) -> bool:
    return ours is not None and not math.isnan(ours) and self.band[0] <= ours <= self.band[1]

  @property
  def excludes_paper(self) -> bool:
    """True when the paper's value is a number outside the band (``why`` must say why);
    a phrase (a claim, "no number") is never judged."""
    number = isinstance(self.paper, (int, float)) and not isinstance(self.paper, bool)
    return number and not self.band[0] <= self.paper <= self.band[1]


@dataclasses.dataclass(frozen=True)
class Budget:
  """What a tier runs: config overrides (steps, sizes, sample counts) and a time estimate."""
  overrides: Dict[str, Any] = dataclasses.field(default_factory=dict)
  minutes: float = 0.0          # wall time expected on the tier's machine
  machine: str = ""             # e.g. "2 CPU cores", "1 H100"
  runnable_here: bool = True    # False: data or hardware this project lacks offline


@dataclasses.dataclass
class Outcome:
  """What an experiment measured: each metric's value by name (a claim: 1.0 when it
  holds, 0.0 when not), the pictures it drew (PNG paths in the workdir) and details
  for results.json."""
  measured: Dict[str, float]
  pictures: List[str] = dataclasses.field(default_factory=list)
  details: Dict[str, Any] = dataclasses.field(default_factory=dict)


# An experiment: ``fn(baseline, budget, workdir, seed) -> Outcome``; those that evaluate
# released weights also take ``weights=`` and ``inception_weights=`` (the runner passes
# the flags only to a function whose signature names them).
Experiment = Callable[..., Outcome]


@dataclasses.dataclass(frozen=True)
class Baseline:
  """A paper's table cell or figure, and how this project reproduces it."""
  name: str
  paper: str                    # e.g. "Song & Ermon 2019 (NCSN)"
  where: str                    # e.g. "Fig. 3"
  dataset: str
  experiment: Experiment        # the function that measures the metrics
  config: Optional[str]         # the config file (None: no training)
  metrics: Tuple[Metric, ...]
  tiers: Dict[str, Budget]
  evaluators: Tuple[str, ...] = ()   # train_evaluate: the config.eval evaluators to run
  note: str = ""                # deviations from the paper, said once

  def budget(self, tier: str) -> Budget:
    if tier not in self.tiers:
      raise KeyError(tier)
    return self.tiers[tier]

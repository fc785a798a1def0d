"""The evaluators' sections, and the one table of evaluator names.

Each evaluator (``diffusion/evals/<name>.py``) takes its arguments and cadence from its
own section ``config.eval.<name>`` (big_vision's evaluator model: the section names the
evaluator and carries its arguments; the evaluator owns every rule about itself).
:data:`EVALUATORS` is the one list of names: it says which families' runs take each
section, and :mod:`diffusion.evals` imports ``diffusion.evals.<name>`` from it. Adding
an evaluator is its module, its section and its line here.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Dict, Tuple, Type

from diffusion.config.schema import Section, fail, field, section
from diffusion.options import AT_LEAST_1, AT_LEAST_2, NONNEGATIVE, OPEN_UNIT, POSITIVE
from diffusion.samplers import ode

PROBES = ("rademacher", "gaussian")


@dataclasses.dataclass(frozen=True)
class BpdEvalConfig(Section):
  """Bits/dim: DDPM's calc_bpd_loop on the eval split (VP processes, 8-bit images)."""
  PATH: ClassVar[str] = "eval.bpd"
  every: int = field(0, "training steps between evaluations (0 = never)", rule=NONNEGATIVE)
  num_examples: int = field(256, "test images scored (>= 2: the standard error needs two)",
                            rule=AT_LEAST_2)
  batch_size: int = field(256, "images per compiled call", rule=AT_LEAST_1)


@dataclasses.dataclass(frozen=True)
class FidEvalConfig(Section):
  """FID / IS / KID in the FID Inception network's features against the training split."""
  PATH: ClassVar[str] = "eval.fid"
  every: int = field(0, "training steps between evaluations (0 = never)", rule=NONNEGATIVE)
  num_samples: int = field(50_000, "samples scored (papers: 50,000)", rule=AT_LEAST_2)
  batch_size: int = field(256, "samples per compiled sampling call", rule=AT_LEAST_1)
  inception_weights: str = field("", "converted pt_inception-2015-12-05 weights (.npz)")

  def check(self):
    if self.every and not self.inception_weights:
      fail("eval.fid.every", self.every, "FID needs eval.fid.inception_weights, the converted "
           "FID Inception weights (.npz); see docs/evaluators.md")


@dataclasses.dataclass(frozen=True)
class ClassifierFidEvalConfig(Section):
  """Fréchet distance in the features of a small classifier trained here on the dataset
  (digits, MNIST, Fashion-MNIST, CIFAR-10), with the real-data floor and class coverage."""
  PATH: ClassVar[str] = "eval.classifier_fid"
  every: int = field(0, "training steps between evaluations (0 = never)", rule=NONNEGATIVE)
  num_samples: int = field(10_000, "samples scored (the floor uses as many test images, at "
                           "most the split)", rule=AT_LEAST_2)
  batch_size: int = field(256, "samples per compiled sampling call", rule=AT_LEAST_1)
  confidence: float = field(0.9, "a sample is confident when the classifier gives one class "
                            "at least this probability", rule=OPEN_UNIT)


@dataclasses.dataclass(frozen=True)
class OdeBpdEvalConfig(Section):
  """Exact bits/dim through the probability-flow ODE (score_sde), Hutchinson trace."""
  PATH: ClassVar[str] = "eval.ode_bpd"
  every: int = field(0, "training steps between evaluations (0 = never)", rule=NONNEGATIVE)
  num_examples: int = field(256, "test images scored (>= 2: the standard error needs two)",
                            rule=AT_LEAST_2)
  batch_size: int = field(64, "images per compiled call", rule=AT_LEAST_1)
  num_probes: int = field(1, "Hutchinson probes per image (score_sde: 1)", rule=AT_LEAST_1)
  probe: str = field("rademacher", "trace probe: rademacher or gaussian", choices=PROBES)
  rtol: float = field(1e-5, "ODE relative tolerance (score_sde: 1e-5)", rule=POSITIVE)
  atol: float = field(1e-5, "ODE absolute tolerance (score_sde: 1e-5)", rule=POSITIVE)
  ode_solver: str = field("tsit5", "adaptive solver: tsit5 or dopri5", choices=ode.SOLVERS)


@dataclasses.dataclass(frozen=True)
class ElboEvalConfig(Section):
  """Test ELBO and importance-weighted log p(x) (Burda et al. 2016) on the fixed
  binarization of the eval split, in nats and bits/dim."""
  PATH: ClassVar[str] = "eval.elbo"
  every: int = field(0, "training steps between evaluations (0 = never)", rule=NONNEGATIVE)
  num_examples: int = field(10_000, "test images scored (at most the split; >= 2: the "
                            "standard error needs two)", rule=AT_LEAST_2)
  iw_samples: int = field(1000, "k of the importance-weighted estimate of log p(x)",
                          rule=AT_LEAST_1)
  batch_size: int = field(100, "test images per compiled call", rule=AT_LEAST_1)


@dataclasses.dataclass(frozen=True)
class HeldoutLossEvalConfig(Section):
  """The family's loss with the EMA parameters on one fixed held-out set of (x0, t, eps)
  drawn from ``seed`` (a search's default metric: every trial scores the same set)."""
  PATH: ClassVar[str] = "eval.heldout_loss"
  every: int = field(0, "training steps between evaluations (0 = never; a search judged "
                     "by it sets training.log_every)", rule=NONNEGATIVE)
  num_examples: int = field(1024, "held-out examples scored (at most the eval split)",
                            rule=AT_LEAST_1)
  batch_size: int = field(256, "examples per compiled call", rule=AT_LEAST_1)
  seed: int = field(0, "draws the set (x0 order, t, eps); a search sets its own seed",
                    rule=NONNEGATIVE)


# Plain dict, config.eval.<name> -> (its section, the families whose runs take it); the
# evaluator is the module diffusion/evals/<name>.py (written out here only).
EVALUATORS: Dict[str, Tuple[Type[Section], Tuple[str, ...]]] = {
    "bpd": (BpdEvalConfig, ("diffusion",)),
    "fid": (FidEvalConfig, ("diffusion",)),
    "elbo": (ElboEvalConfig, ("vae",)),
    "classifier_fid": (ClassifierFidEvalConfig, ("diffusion", "vae")),
    "ode_bpd": (OdeBpdEvalConfig, ("diffusion",)),
    "heldout_loss": (HeldoutLossEvalConfig, ("diffusion", "vae")),
}


def eval_section(name: str, family: str, doc: str) -> type:
  """The ``eval`` section of ``family``'s runs: one sub-section per evaluator it takes."""
  subs = [(evaluator, cls, dataclasses.field(default_factory=cls))
          for evaluator, (cls, families) in EVALUATORS.items() if family in families]
  return section(name, "eval", doc, subs)

"""Evaluators: plug-ins, one module each, declared in ``config.eval``.

Each sub-section of ``config.eval`` names an evaluator and carries its arguments
and cadence (``every``, in training steps; 0 = only on request), big_vision style:

  --config.eval.bpd.every=5000 --config.eval.bpd.num_examples=1000

The names are the table ``diffusion.config.evals.EVALUATORS`` (with each one's section);
the evaluator of ``name`` is the class ``EVALUATOR`` of the module
``diffusion.evals.<name>``, imported by name as big_vision's evaluator factory does. It
owns every rule about itself (``check_applies``). The training loop builds those with
``every > 0`` and calls ``run(ema_params, step)`` when it is time; ``sample.py
--eval=NAME``, sweep summaries and reproductions reach them through the same interface
(:mod:`diffusion.evals.base`): ``run(params, step, samples=None) -> {"eval/<metric>":
float}`` and ``summary()``.

  ==============  ==================================================================
  bpd             bits/dim: DDPM's calc_bpd_loop on ``data.eval_split`` (VP processes)
  fid             FID / IS / KID of samples in the FID Inception network's features
                  against the training split (statistics cached in the workdir)
  elbo            VAE: test ELBO and importance-weighted log p(x), nats and bits/dim
  classifier_fid  Fréchet distance of samples in the features of a small classifier
                  trained here, with the real-data floor, the classifier's accuracy,
                  and the share of confidently classified samples and their classes
  ode_bpd         exact bits/dim through the probability-flow ODE (Hutchinson trace,
                  dequantized as score_sde), with standard errors and NFE
  heldout_loss    the family's loss with the EMA parameters on one fixed held-out set of
                  (x0, t, eps) drawn from its seed (a search's default metric)
  ==============  ==================================================================

  base.py        the interface, eval randomness, result files
  metrics.py     the maths: bits/dim of a source, FID / IS / KID, reference statistics
  inception.py   the FID Inception network; inception_convert.py reads pytorch-fid's .pth
  classifier.py  the small classifiers behind classifier_fid
"""

import dataclasses
import importlib
import os
from typing import Dict, List, Optional, Sequence, Tuple, Type

import diffusion.config.evals
from diffusion.errors import ConfigError
from diffusion.evals.base import Evaluator

# config.eval.<name> -> evaluator class, derived from the config's one table of names.
EVALUATORS: Dict[str, Type[Evaluator]] = {
    name: importlib.import_module(f"diffusion.evals.{name}").EVALUATOR
    for name in diffusion.config.evals.EVALUATORS}


def maximised_metrics() -> Tuple[str, ...]:
  """The eval/* metrics where larger is better (every other one is minimised)."""
  return tuple(m for cls in EVALUATORS.values() for m in cls.MAXIMISED)


def logged_name(metric: str) -> str:
  """The name ``metric`` is logged under. Evaluators log ``eval/<key>``; the spelling that
  also names the evaluator, ``eval/<evaluator>/<key>`` (``eval/classifier_fid/cfid``, the
  config's ``eval.classifier_fid`` section), means the same metric. Other names are
  returned unchanged."""
  parts = metric.split("/")
  if len(parts) == 3 and parts[0] == "eval" and parts[1] in EVALUATORS and parts[2]:
    return f"eval/{parts[2]}"
  return metric


def _sections(config) -> Dict:
  return {f.name: getattr(config.eval, f.name) for f in dataclasses.fields(config.eval)}


def check_applies(config, names: Optional[Sequence[str]] = None) -> None:
  """Each evaluator the typed run ``config`` enables (``every > 0``), or ``names``,
  checked against the run by its own rule: one-line ConfigError, before anything
  trains or samples."""
  sections = _sections(config)
  chosen = list(names) if names is not None else [
      name for name, cfg in sections.items() if cfg.every > 0]
  for name in chosen:
    if name not in sections:
      raise ConfigError(f"evaluator {name!r} is not one of this family's: "
                        f"{', '.join(sections)}.")
    EVALUATORS[name].check_applies(config)


def make_evaluators(family, workdir: str, names: Optional[Sequence[str]] = None,
                    seed: Optional[int] = None, output_dir: Optional[str] = None) -> List:
  """The evaluators of ``family.config.eval``: those with ``every > 0``, or ``names``.

  Each applies or fails (one line) before any is built; ``seed`` (default:
  training.seed) seeds their randomness; results files go to ``output_dir`` (default:
  the workdir).
  """
  config = family.config
  sections = _sections(config)
  chosen = list(names) if names is not None else [
      name for name, cfg in sections.items() if cfg.every > 0]
  check_applies(config, chosen)
  seed = config.training.seed if seed is None else seed
  workdir = os.path.abspath(workdir)
  return [EVALUATORS[name](sections[name], family, workdir, seed, output_dir)
          for name in chosen]

"""Evaluators declared in ``config.eval``: small objects with ``run(params, step)``.

Each sub-section of ``config.eval`` names an evaluator and carries its arguments
and cadence (``every``, in training steps; 0 = only on request), big_vision style:

  --config.eval.bpd.every=5000 --config.eval.bpd.num_examples=1000

The training loop builds the evaluators with ``every > 0`` and only calls
``run(ema_params, step)`` when it is time; ``sample.py --bpd / --fid`` builds the
same objects by name. Each returns a dict of floats named ``eval/<metric>``.

  =====  =====================================================================
  bpd    bits/dim: DDPM's calc_bpd_loop on ``data.eval_split`` (VP processes)
  fid    FID / IS / KID of fresh samples in the FID Inception network's features
         against the training split (statistics cached in the workdir)
  =====  =====================================================================
"""

import dataclasses
import os
from typing import Dict, List, Optional, Sequence

import jax
import numpy as np

from diffusion import catalog, config_check, evaluation, inception
from diffusion.config import BpdEvalConfig, FidEvalConfig
from diffusion.data import make_source
from diffusion.errors import ConfigError
from diffusion.families import draw


def _key(seed: int, salt: int, step: int) -> jax.Array:
  """Evaluation randomness: a pure function of (training.seed, evaluator, step)."""
  return jax.random.fold_in(jax.random.PRNGKey(seed + salt), step)


class BitsPerDim:
  """DDPM's bound on ``num_examples`` test images (``eval.bpd``), with its SE.

  The full T-term bound (KL terms, discretized decoder, prior), x̂₀ clipped, as
  DDPM's ``calc_bpd_loop``; it needs a VP process and 8-bit images in [-1, 1].
  """
  name = "bpd"

  def __init__(self, cfg: BpdEvalConfig, family, workdir: str = "", seed: int = 0):
    del workdir  # nothing is cached
    config_check.check_bpd_applies(family.config)
    self.cfg, self.family, self.seed = cfg, family, seed
    self._source = None
    self.last: Optional[dict] = None   # the full result of the latest run (terms_bpd, ...)

  @property
  def every(self) -> int:
    return self.cfg.every

  def run(self, params, step: int) -> Dict[str, float]:
    if self._source is None:  # the eval split is read on first use only
      data = self.family.config.data
      self._source = make_source(data, split=data.eval_split)
    result = evaluation.bpd_of_source(
        self.family.eps_fn(params), self.family.process, self._source, self.cfg.num_examples,
        self.cfg.batch_size, _key(self.seed, 2, step), self.family.config.diffusion.var_type)
    self.last = result
    return {"eval/bpd": result["bpd"], "eval/bpd_se": result["bpd_se"]}


class FrechetInception:
  """FID / IS / KID (``eval.fid``) against the training split, in FID Inception features.

  Reference statistics of ``min(num_samples, N_train)`` training images are
  computed once and cached in the workdir; the training data is read only then.
  """
  name = "fid"

  def __init__(self, cfg: FidEvalConfig, family, workdir: str, seed: int = 0):
    config_check.check_fid_applies(family.config)
    self.cfg, self.family, self.workdir, self.seed = cfg, family, workdir, seed
    self.net = inception.load_inception(cfg.inception_weights)  # ConfigError if missing
    self._sample_fn = None

  @property
  def every(self) -> int:
    return self.cfg.every

  def score(self, images_uint8: np.ndarray) -> Dict[str, float]:
    """FID, IS and KID of uint8 images [N, H, W, C] against the training split."""
    data = self.family.config.data
    info = catalog.dataset_info(data.dataset)
    known = info.num_examples.get(data.split)
    train = None
    if known is None:  # e.g. npz: the count needs the file
      train = make_source(data, split=data.split)
      known = train.num_examples
    n_ref = min(known, self.cfg.num_samples)

    def reference_features():
      source = train if train is not None else make_source(data, split=data.split)
      return self.net.features(evaluation.source_images(source, n_ref))["pool"]

    ref = evaluation.reference_stats(
        self.workdir, f"{data.dataset}_{data.split}_{data.image_size}px", n_ref,
        reference_features, keep_features=True)
    stats = evaluation.sample_quality_metrics(self.net.features(images_uint8), ref)
    return {f"eval/{k}": v for k, v in stats.items()}

  def run(self, params, step: int) -> Dict[str, float]:
    if self._sample_fn is None:
      self._sample_fn = self.family.sample_fn(self.cfg.batch_size)
    samples = draw(self._sample_fn, params, self.cfg.num_samples, self.cfg.batch_size,
                   _key(self.seed, 3, step))
    return self.score(self.family.to_uint8(samples))


EVALUATORS = {"bpd": BitsPerDim, "fid": FrechetInception}


def make_evaluators(family, workdir: str, names: Optional[Sequence[str]] = None,
                    seed: Optional[int] = None) -> List:
  """The evaluators of ``family.config.eval``: those with ``every > 0``, or ``names``.

  ``seed`` (default: training.seed) seeds their randomness.
  """
  config = family.config
  sections = {f.name: getattr(config.eval, f.name) for f in dataclasses.fields(config.eval)}
  chosen = list(names) if names is not None else [
      name for name, cfg in sections.items() if cfg.every > 0]
  for name in chosen:
    if name not in sections:
      raise ConfigError(f"evaluator {name!r} is not one of this family's: "
                        f"{', '.join(sections)}.")
  seed = config.training.seed if seed is None else seed
  return [EVALUATORS[name](sections[name], family, os.path.abspath(workdir), seed)
          for name in chosen]

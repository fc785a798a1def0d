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
  elbo   VAE: test ELBO and importance-weighted log p(x) (k samples of q), nats and
         bits/dim, also written to <workdir>/likelihood_<step>.json
  classifier_fid  Fréchet distance of samples in the features of a small classifier
         trained here on the dataset, with the real-data floor, the classifier's test
         accuracy, and the share of confidently classified samples and their classes
  =====  =====================================================================
"""

import dataclasses
import json
import math
import os
from typing import Dict, List, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diffusion.config import catalog
from diffusion.evals import classifier
from diffusion.config import checks as config_check
from diffusion.evals import metrics as evaluation
from diffusion.evals import inception
from diffusion.families import vae
from diffusion.config import (BpdEvalConfig, ClassifierFidEvalConfig, ElboEvalConfig,
                              FidEvalConfig)
from diffusion.data import fixed_binarization, make_source
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


class LikelihoodBound:
  """The VAE's test ELBO and importance-weighted log p(x) (``eval.elbo``).

  On ``num_examples`` eval-split images, binarized once with ``data.binarize_seed``
  (the training split is binarized anew every step): log p(x) ≈ L_k, the
  log-mean-exp of k = ``iw_samples`` importance weights p(x, z)/q(z|x) with z ~ q
  (Burda et al. 2016; the estimate is a lower bound that grows with k), and the
  single-sample ELBO. Means with their standard errors, in nats and bits/dim.
  """
  name = "elbo"

  def __init__(self, cfg: ElboEvalConfig, family, workdir: str = "", seed: int = 0):
    self.cfg, self.family, self.workdir, self.seed = cfg, family, workdir, seed
    self._x = None
    self.last: Optional[dict] = None
    k, chunk = cfg.iw_samples, min(cfg.iw_samples, 100)

    def bound(params, x, key):
      return vae.iw_log_likelihood(family.encoder(params), family.decoder(params), x, key, k,
                                   chunk)
    self._bound = jax.jit(bound)

  @property
  def every(self) -> int:
    return self.cfg.every

  def test_images(self) -> np.ndarray:
    """The evaluated images in [0, 1]: the split's first num_examples, binarized once."""
    if self._x is None:
      data = self.family.config.data
      images = make_source(data, split=data.eval_split).arrays["images"][:self.cfg.num_examples]
      self._x = (fixed_binarization(images, data.binarize_seed) if data.binarize != "none"
                 else images.astype(np.float32) / 255.0)
    return self._x

  def run(self, params, step: int) -> Dict[str, float]:
    x, b = self.test_images(), self.cfg.batch_size
    key = _key(self.seed, 4, step)
    parts = {"log_px": [], "elbo": []}
    for i in range(0, len(x), b):
      out = self._bound(params, jnp.asarray(x[i:i + b]), jax.random.fold_in(key, i))
      for name in parts:
        parts[name].append(np.asarray(out[name], np.float64))
    n, dims = len(x), self.family.num_dims
    result = {"step": int(step), "num_examples": n, "iw_samples": self.cfg.iw_samples,
              "split": self.family.config.data.eval_split,
              "binarization": (f"fixed, seed {self.family.config.data.binarize_seed}"
                               if self.family.config.data.binarize != "none" else "none")}
    for name, values in parts.items():
      v = np.concatenate(values)
      result[f"{name}_nats"] = float(v.mean())
      result[f"{name}_se"] = float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
      result[f"{name}_bpd"] = float(-v.mean() / (dims * math.log(2.0)))
    self.last = result
    if self.workdir:
      with open(os.path.join(self.workdir, f"likelihood_{step}.json"), "w",
                encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    return {"eval/log_px": result["log_px_nats"], "eval/log_px_se": result["log_px_se"],
            "eval/log_px_bpd": result["log_px_bpd"], "eval/elbo": result["elbo_nats"],
            "eval/elbo_se": result["elbo_se"], "eval/elbo_bpd": result["elbo_bpd"]}


CLASSIFIED_DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar10_sample")


class ClassifierFrechet:
  """Sample quality for small data (``eval.classifier_fid``).

  Features of :mod:`diffusion.evals.classifier`'s network, trained on the training split:
  cfid = Fréchet distance of ``num_samples`` samples against the training split's
  features; cfid_floor = the same for as many test images (at most the split), the
  best a model of the data can expect at that sample count; the classifier's test
  accuracy; and the share of samples it assigns one class with probability >=
  ``confidence`` with the number of classes among them, beside the same for the
  test images.
  """
  name = "classifier_fid"

  def __init__(self, cfg: ClassifierFidEvalConfig, family, workdir: str = "", seed: int = 0):
    data = family.config.data
    if data.dataset not in CLASSIFIED_DATASETS:
      raise ConfigError(f"classifier_fid needs a labelled image set "
                        f"({', '.join(CLASSIFIED_DATASETS)}); data.dataset={data.dataset!r}.")
    self.cfg, self.family, self.workdir, self.seed = cfg, family, workdir, seed
    self._net = self._ref = None
    self._sample_fn = None
    self.real: Dict[str, float] = {}
    self.last: Optional[dict] = None

  @property
  def every(self) -> int:
    return self.cfg.every

  def _setup(self):
    if self._net is not None:
      return
    data = self.family.config.data
    train = make_source(data, split=data.split).arrays
    test = make_source(data, split=data.eval_split).arrays
    self._net = classifier.load_or_train(f"{data.dataset}_{data.image_size}px", train, test)
    feats = self._net.features(train["images"].astype(np.float32) / 255.0)
    self._ref = evaluation.feature_statistics(feats)
    n_floor = min(self.cfg.num_samples, len(test["images"]))
    floor = self._stats(test["images"][:n_floor])
    self.real = {"cfid_floor": floor["cfid"], "confident_real": floor["confident"],
                 "classes_real": floor["classes"], "classifier_accuracy":
                 self._net.test_accuracy, "floor_num_images": n_floor}

  def _stats(self, images_uint8: np.ndarray) -> Dict[str, float]:
    x = np.asarray(images_uint8, np.float32) / 255.0
    mu, sigma = evaluation.feature_statistics(self._net.features(x))
    probs = self._net.probs(x)
    confident = probs.max(axis=1) >= self.cfg.confidence
    return {"cfid": evaluation.frechet_distance(mu, sigma, *self._ref),
            "confident": float(confident.mean()),
            "classes": float(len(np.unique(probs.argmax(axis=1)[confident])))}

  def score(self, images_uint8: np.ndarray) -> Dict[str, float]:
    """The metrics of uint8 samples [N, H, W, C] (N as given), with the real-data figures."""
    self._setup()
    out = self._stats(images_uint8)
    self.last = dict(out, **self.real, num_samples=len(images_uint8))
    return {f"eval/{k}": float(v) for k, v in self.last.items()
            if k not in ("num_samples", "floor_num_images")}

  def run(self, params, step: int) -> Dict[str, float]:
    if self._sample_fn is None:
      self._sample_fn = self.family.sample_fn(self.cfg.batch_size)
    samples = draw(self._sample_fn, params, self.cfg.num_samples, self.cfg.batch_size,
                   _key(self.seed, 5, step))
    return self.score(self.family.to_uint8(samples))


EVALUATORS = {"bpd": BitsPerDim, "fid": FrechetInception, "elbo": LikelihoodBound,
              "classifier_fid": ClassifierFrechet}


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

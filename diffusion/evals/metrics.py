"""Evaluation: bits/dim on test data (the full variational bound) and FID / IS / KID.

Bits/dim (DDPM's ``calc_bpd_loop``, Ho et al. 2020 §4.3 / eq. 5):
  for every t = T−1..0 draw x_t ~ q(x_t | x₀) and take term_t = L_{t}
  (KL(q(x_{t−1}|x_t,x₀) ‖ p_θ(x_{t−1}|x_t)) for t > 0, discretized-Gaussian
  decoder NLL for t = 0; ``losses.vb_terms_bpd``), then
  total = Σ_t term_t + L_T (prior KL, ``process.prior_bpd``), all in bits/dim.
  VP processes only (DDPM/DPM: data in [−1, 1] on an 8-bit grid).

Sample quality (numpy float64; features from ``diffusion.evals.inception``):
  FID = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2})   (scipy.linalg.sqrtm, as pytorch-fid)
  IS  = exp(E_x KL(p(y|x) ‖ p(y))) per split, mean ± std over splits (10 by default),
        p(y|x) = softmax of the 1008-way logits without the fc bias (the original
        TF Inception-Score code's ``matmul(pool3, w)``).
  KID = unbiased MMD² with kernel k(x, y) = (xᵀy/d + 1)³, averaged over random
        subsets (100 subsets of 1000 by default), mean ± std (Bińkowski et al.
        2018; torch-fidelity / clean-fid defaults).
Reference statistics of a dataset (μ, Σ of its Inception features) are cached
in ``<cache_dir>/fid_stats_<dataset>_<num_examples>.npz``.

Typical use (sample.py / training evaluation)::

  net = inception.load_inception(config.eval.inception_weights)  # ConfigError if missing
  ref = reference_stats(workdir, "cifar10/train", 50_000,
                        lambda: net.features(train_uint8)["pool"], keep_features=False)
  feats = net.features(diffusion.data.to_uint8(samples, centered=True))
  metrics = sample_quality_metrics(feats, ref)   # fid, is_mean, is_std (+ kid_* with features)
"""

from __future__ import annotations

import functools
import math
import os
import re
import warnings
from typing import Callable, Dict, Iterable, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from diffusion.io import atomic
from diffusion.core import losses
from diffusion.config import VAR_TYPES
from diffusion.data import preprocess
from diffusion.errors import ConfigError, check_choice
from diffusion.core.model_fn import as_prediction
from diffusion.samplers import split_fn
from diffusion.samplers.chain import segments

Array = jax.Array


# ---------------------------------------------------------------------------
# Bits per dimension
# ---------------------------------------------------------------------------


def _terms(eps_fn, process, x0, key, ts, var_type, clip_range, decoder):
  """The bound's terms at the levels ``ts`` [n] of a batch x0 [B, ...]: [n, B] bits/dim.
  Each t draws its own noise, fold_in(key, t), so any split of the levels gives the same
  terms."""
  b = x0.shape[0]

  def term(_, t):
    tb = jnp.full((b,), t, jnp.int32)
    noise = jax.random.normal(jax.random.fold_in(key, t), x0.shape, x0.dtype)
    x_t = process.q_sample(x0, tb, noise)
    eps, v = as_prediction(eps_fn(x_t, tb), var_type, "diffusion.var_type")
    vt = "learned_range" if v is not None else var_type
    return None, losses.vb_terms_bpd(process, x0, x_t, tb, eps, vt, v, clip_range, decoder)

  return jax.lax.scan(term, None, ts)[1]


@functools.partial(jax.jit, static_argnames=("spec", "var_type", "clip_range", "decoder"))
def _bpd_jit(dynamic, process, x0, key, *, spec, var_type, clip_range, decoder):
  T = process.num_timesteps
  terms = _terms(spec.rebuild(dynamic), process, x0, key,
                 jnp.arange(T - 1, -1, -1, dtype=jnp.int32), var_type, clip_range, decoder)
  terms = terms[::-1].T  # [B, T], column t = term_t
  prior = process.prior_bpd(x0)
  return {"total_bpd": jnp.sum(terms, axis=1) + prior, "terms_bpd": terms, "prior_bpd": prior}


@functools.partial(jax.jit, static_argnames=("spec", "var_type", "clip_range", "decoder",
                                             "length"))
def _bpd_segment_jit(dynamic, process, x0, key, start, *, spec, var_type, clip_range, decoder,
                     length):
  """Terms at t = start .. start + length − 1 ([length, B]; ``start`` traced: one program
  per length)."""
  ts = start + jnp.arange(length, dtype=jnp.int32)
  return _terms(spec.rebuild(dynamic), process, x0, key, ts, var_type, clip_range, decoder)


def calc_bpd(eps_fn: Callable, process, x0: Array, key: Array, var_type: str = "fixedlarge",
             clip_x0: bool = True, clip_range: Tuple[float, float] = (-1.0, 1.0),
             decoder: str = "discretized",
             on_progress: Optional[Callable[[int, int], None]] = None) -> Dict[str, Array]:
  """The full T-term variational bound of a batch, in bits/dim (one jitted scan over t;
  with ``on_progress``, about 20 scans over ranges of t, each reported as
  ``on_progress(levels done, T)``: the same terms).

  Args:
    eps_fn: (x_t, t) -> ε̂ or (ε̂, v) (learned variance; then learned_range is used).
    process: a VPProcess.
    x0: [B, ...] test data in [−1, 1] on the 8-bit grid (x/127.5 − 1).
    key: PRNG key; the noise of step t is drawn from fold_in(key, t).
    var_type: reverse variance of the model (config.diffusion.var_type).
    clip_x0: clip x̂₀ to ``clip_range`` in the posterior means (DDPM's bpd loop does).
    decoder: the t = 0 term: ``discretized`` (8-bit images) or ``gaussian`` (a density,
      for continuous data such as the 2-D toy sets; then the bound is of a density).
  Returns:
    dict of float32 arrays: total_bpd [B] (= Σ_t terms_bpd[:, t] + prior_bpd),
    terms_bpd [B, T] (column 0 is the decoder NLL), prior_bpd [B].
  Raises:
    ConfigError: for a VE process or an invalid var_type.
  """
  if not process.has_likelihood_bound:
    raise ConfigError(
        "bits/dim applies to VP variants (ddpm, dpm) only; NCSN's VE process has no discrete "
        "decoder and no finite prior KL, so set eval.bpd=False for diffusion.variant='ncsn'.")
  check_choice("diffusion.var_type", var_type, VAR_TYPES)
  spec, dynamic = split_fn(eps_fn)
  clip = (float(clip_range[0]), float(clip_range[1])) if clip_x0 else None
  x0 = jnp.asarray(x0, jnp.float32)
  options = dict(spec=spec, var_type=var_type, clip_range=clip, decoder=decoder)
  if on_progress is None:
    return _bpd_jit(dynamic, process, x0, key, **options)
  T, parts = process.num_timesteps, []
  for start, stop in segments(T):
    parts.append(_bpd_segment_jit(dynamic, process, x0, key, jnp.int32(start),
                                  length=stop - start, **options))
    jax.block_until_ready(parts[-1])
    on_progress(stop, T)
  terms = jnp.concatenate(parts).T   # [B, T], column t = term_t
  prior = process.prior_bpd(x0)
  return {"total_bpd": jnp.sum(terms, axis=1) + prior, "terms_bpd": terms, "prior_bpd": prior}


def evaluate_bpd(eps_fn: Callable, process, batches: Iterable, key: Array,
                 var_type: str = "fixedlarge", clip_x0: bool = True,
                 on_progress: Optional[Callable[[int], None]] = None
                 ) -> Dict[str, np.ndarray]:
  """calc_bpd over an iterable of [B, ...] batches; dataset means and standard error.
  ``on_progress(levels done)`` counts the levels of every batch (T per batch).

  Returns:
    dict: bpd (mean total, float), bpd_se (its standard error), terms_bpd [T] mean
    per-t terms, prior_bpd (mean), num_examples.
  """
  totals, terms, priors = [], [], []
  T = process.num_timesteps
  for i, x0 in enumerate(batches):
    report = (None if on_progress is None else
              lambda done, total, i=i: on_progress(i * T + done))
    out = calc_bpd(eps_fn, process, x0, jax.random.fold_in(key, i), var_type, clip_x0,
                   on_progress=report)
    totals.append(np.asarray(out["total_bpd"], np.float64))
    terms.append(np.asarray(out["terms_bpd"], np.float64))
    priors.append(np.asarray(out["prior_bpd"], np.float64))
  if not totals:
    raise ValueError("evaluate_bpd got no batches")
  total = np.concatenate(totals)
  n = total.shape[0]
  return {"bpd": float(total.mean()),
          "bpd_se": float(total.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
          "terms_bpd": np.concatenate(terms).mean(axis=0),
          "prior_bpd": float(np.concatenate(priors).mean()), "num_examples": n}


# ---------------------------------------------------------------------------
# FID / KID / IS
# ---------------------------------------------------------------------------


def feature_statistics(features: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """features [N, d] -> (mean [d], covariance [d, d]) in float64 (unbiased, N − 1)."""
  f = np.asarray(features, np.float64)
  if f.ndim != 2 or f.shape[0] < 2:
    raise ValueError(f"need features [N >= 2, d], got shape {f.shape}")
  return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray, eps: float = 1e-6) -> float:
  """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), float64.

  d² = ‖μ₁ − μ₂‖² + tr(Σ₁) + tr(Σ₂) − 2 tr((Σ₁Σ₂)^{1/2}). As pytorch-fid: when
  sqrtm of the product is singular/non-finite, eps·I is added to both
  covariances; a small imaginary part from numerical error is dropped.
  """
  # scipy.linalg takes ~0.4 s to import; only Fréchet distances need it.
  from scipy import linalg  # pylint: disable=import-outside-toplevel
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or s1.shape != s2.shape:
    raise ValueError("mean vectors / covariances have different shapes")
  diff = mu1 - mu2
  with warnings.catch_warnings():
    # With fewer samples than feature dimensions the product is singular and scipy warns
    # on every call; pytorch-fid silences it (disp=False) and, as here, falls back to
    # eps·I only when the root is not finite.
    warnings.simplefilter("ignore", linalg.LinAlgWarning)
    covmean = linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
      offset = np.eye(s1.shape[0]) * eps
      covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag))} in sqrtm")
    covmean = covmean.real
  return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def kernel_inception_distance(features1: np.ndarray, features2: np.ndarray,
                              num_subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> Tuple[float, float]:
  """KID: unbiased MMD² with the cubic polynomial kernel, over random subsets.

  Kernel k(x, y) = (xᵀy/d + 1)³ (degree 3, γ = 1/d, coef0 = 1). For each subset
  (m = min(subset_size, N1, N2) rows of each set, drawn without replacement):
    MMD² = [Σ_{i≠j} k(x_i,x_j) + Σ_{i≠j} k(y_i,y_j)]/(m(m−1)) − 2 Σ_{i,j} k(x_i,y_j)/m².
  Returns:
    (mean, std) over the subsets, float64.
  """
  f1, f2 = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
  d = f1.shape[1]
  m = min(subset_size, f1.shape[0], f2.shape[0])
  if m < 2:
    raise ValueError("KID needs at least 2 examples in each set")
  rng = np.random.default_rng(seed)
  mmds = np.zeros(num_subsets)
  for i in range(num_subsets):
    x = f1[rng.choice(f1.shape[0], m, replace=False)]
    y = f2[rng.choice(f2.shape[0], m, replace=False)]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    mmds[i] = within - 2.0 * kxy.sum() / m ** 2
  return float(mmds.mean()), float(mmds.std())


def inception_score(logits: np.ndarray, splits: int = 10) -> Tuple[float, float]:
  """IS = exp(mean_x KL(p(y|x) ‖ p(y))) in each of ``splits`` chunks; (mean, std).

  logits: [N, K] (the 1008-way unbiased logits; softmax taken here, float64).
  """
  z = np.asarray(logits, np.float64)
  z = z - z.max(axis=1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
  n = logp.shape[0]
  if splits < 1 or n < splits:
    raise ValueError(f"need at least {splits} examples for {splits} splits, got {n}")
  scores = []
  for k in range(splits):
    part = logp[k * n // splits:(k + 1) * n // splits]
    p = np.exp(part)
    log_py = np.log(p.mean(axis=0))
    kl = (p * (part - log_py)).sum(axis=1).mean()
    scores.append(math.exp(kl))
  return float(np.mean(scores)), float(np.std(scores))


# ---------------------------------------------------------------------------
# Reference statistics cache
# ---------------------------------------------------------------------------


def reference_stats_path(cache_dir: str, dataset: str, num_examples: int) -> str:
  """<cache_dir>/fid_stats_<dataset>_<num_examples>.npz (dataset name made file-safe)."""
  safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(dataset))
  return os.path.join(cache_dir, f"fid_stats_{safe}_{int(num_examples)}.npz")


def reference_stats(cache_dir: str, dataset: str, num_examples: int,
                    compute_features: Callable[[], np.ndarray],
                    keep_features: bool = False) -> Dict[str, np.ndarray]:
  """Loads cached Inception statistics of a dataset, computing and caching them once.

  Args:
    cache_dir: directory of the cache (e.g. the run's workdir); created if needed.
    dataset: dataset name (part of the cache key), e.g. "cifar10/train".
    num_examples: number of examples used (part of the cache key).
    compute_features: () -> [num_examples, 2048] pool features; called only on a miss.
    keep_features: also store the features (float32; KID needs them).
  Returns:
    dict with mu [2048] and sigma [2048, 2048] (float64), and features when stored.
  """
  path = reference_stats_path(cache_dir, dataset, num_examples)
  if os.path.isfile(path):
    with np.load(path, allow_pickle=False) as f:
      cached = {k: f[k] for k in f.files}
    if not keep_features or "features" in cached:
      return cached
  feats = np.asarray(compute_features())
  if feats.shape[0] != num_examples:
    raise ValueError(f"compute_features returned {feats.shape[0]} rows, expected {num_examples}")
  mu, sigma = feature_statistics(feats)
  out = {"mu": mu, "sigma": sigma}
  if keep_features:
    out["features"] = feats.astype(np.float32)
  os.makedirs(cache_dir, exist_ok=True)
  atomic.write_npz(path, **out)  # a crash never leaves a half-written cache
  return out


def sample_quality_metrics(sample_feats: Dict[str, np.ndarray], ref: Dict[str, np.ndarray],
                           is_splits: int = 10, kid_subsets: int = 100,
                           kid_subset_size: int = 1000) -> Dict[str, float]:
  """FID, IS (and KID when ``ref`` holds features) of samples against reference stats.

  Args:
    sample_feats: InceptionNet.features(...) of the samples: pool [N, 2048],
      logits_unbiased [N, 1008].
    ref: reference_stats(...) output.
  Returns:
    dict: fid, is_mean, is_std, and kid_mean, kid_std when available.
  """
  mu, sigma = feature_statistics(sample_feats["pool"])
  out = {"fid": frechet_distance(mu, sigma, ref["mu"], ref["sigma"])}
  out["is_mean"], out["is_std"] = inception_score(sample_feats["logits_unbiased"], is_splits)
  if "features" in ref:
    out["kid_mean"], out["kid_std"] = kernel_inception_distance(
        sample_feats["pool"], ref["features"], kid_subsets, kid_subset_size)
  return out


# ---------------------------------------------------------------------------
# Whole-split helpers used by sample.py and by training's periodic evaluation
# ---------------------------------------------------------------------------


def source_images(source, num_examples: int) -> np.ndarray:
  """uint8 examples of an image source: the first ``num_examples`` of an in-memory
  split, or as many streamed ones (a seeded random subset) of a large one."""
  if source.arrays:
    return np.asarray(source.arrays["images"][:num_examples])
  n = min(num_examples, source.num_examples)
  return next(iter(source.iterator(n, seed=0, start_step=0)))


def bpd_of_source(eps_fn: Callable, process, source, num_examples: int, batch_size: int,
                  key: Array, var_type: str,
                  on_progress: Optional[Callable[[int, int], None]] = None
                  ) -> Dict[str, np.ndarray]:
  """Bits/dim of ``eps_fn`` on ``num_examples`` 8-bit images of ``source``.

  The pixels are scaled to [-1, 1] with no dequantization and no flips, as the
  discretized decoder expects (DDPM's calc_bpd_loop, x0 clipped); see
  :func:`evaluate_bpd` for the returned fields. ``on_progress(done, total)`` counts
  terms: T per batch of ``batch_size`` images.
  """
  images = source_images(source, num_examples)
  scale = jax.jit(lambda x: preprocess(x, jax.random.PRNGKey(0), centered=True,
                                       uniform_dequantization=False, random_flip=False))
  batches = (scale(images[i:i + batch_size]) for i in range(0, len(images), batch_size))
  total = -(-len(images) // batch_size) * process.num_timesteps
  return evaluate_bpd(eps_fn, process, batches, key, var_type=var_type, clip_x0=True,
                      on_progress=None if on_progress is None else
                      lambda done: on_progress(done, total))

"""diffusion/evals/metrics.py: bits/dim terms against float64 numpy, the Fréchet
distance, KID and Inception Score against independent computations, reference statistics
cached."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffusion
from diffusion.errors import ConfigError
from diffusion.evals import metrics


# ---- FID / KID / IS -------------------------------------------------------------------------


def test_frechet_distance_against_eigenvalue_formula():
  rng = np.random.default_rng(3)
  d = 6
  a = rng.standard_normal((400, d)) @ rng.standard_normal((d, d))
  b = rng.standard_normal((300, d)) @ rng.standard_normal((d, d)) + 0.5
  mu1, s1 = metrics.feature_statistics(a)
  mu2, s2 = metrics.feature_statistics(b)
  np.testing.assert_allclose(s1, np.cov(a.T), rtol=1e-12)
  # tr (S1 S2)^{1/2} = Σ √eig(√S1 S2 √S1), √S1 from the symmetric eigendecomposition.
  w, u = np.linalg.eigh(s1)
  root1 = u @ np.diag(np.sqrt(w)) @ u.T
  tr_covmean = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ s2 @ root1), 0, None)))
  want = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean
  assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-9)
  assert abs(metrics.frechet_distance(mu1, s1, mu1, s1)) < 1e-8
  # 1-D Gaussians: (μ1 − μ2)² + (σ1 − σ2)².
  assert metrics.frechet_distance([0.0], [[4.0]], [1.0], [[9.0]]) == pytest.approx(2.0)


def test_frechet_distance_of_rank_deficient_covariances_is_quiet_and_right():
  """Fewer samples than dimensions (a small cfid) or identical samples: singular
  covariances, no LinAlgWarning, and still the closed form's value."""
  import warnings  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(5)
  a, b = rng.standard_normal((5, 12)), rng.standard_normal((7, 12)) + 0.3
  mu1, s1 = metrics.feature_statistics(a)
  mu2, s2 = metrics.feature_statistics(b)
  assert np.linalg.matrix_rank(s1) == 4
  w, u = np.linalg.eigh(s1)
  root1 = u @ np.diag(np.sqrt(np.clip(w, 0, None))) @ u.T
  tr_covmean = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ s2 @ root1), 0, None)))
  want = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    got = metrics.frechet_distance(mu1, s1, mu2, s2)
    # Identical samples (blank images): zero covariance, so d² = ‖μ₁ − μ₂‖² + tr(Σ₂).
    blank = metrics.frechet_distance(np.zeros(12), np.zeros((12, 12)), mu2, s2)
  assert got == pytest.approx(want, rel=1e-6)
  assert blank == pytest.approx(np.sum(mu2 ** 2) + np.trace(s2), rel=1e-6)


def test_classifier_frechet_distance_against_float64():
  """The evaluator's distance is the closed form on float64 feature statistics."""
  rng = np.random.default_rng(1)
  a = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
  b = rng.normal(size=(500, 6)) * 1.3 + 0.5
  mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
  mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
  # Tr((Σ1Σ2)^½) from the eigenvalues of Σ1^½ Σ2 Σ1^½ (symmetric, float64).
  w, v = np.linalg.eigh(s1)
  root = v @ np.diag(np.sqrt(np.maximum(w, 0))) @ v.T
  tr = np.sum(np.sqrt(np.maximum(np.linalg.eigvalsh(root @ s2 @ root), 0)))
  want = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr
  got = metrics.frechet_distance(*metrics.feature_statistics(a),
                                 *metrics.feature_statistics(b))
  assert got == pytest.approx(want, rel=1e-8)


def test_kid_against_explicit_loops():
  rng = np.random.default_rng(4)
  f1, f2 = rng.standard_normal((12, 5)), rng.standard_normal((15, 5)) + 0.3
  m, subsets, seed = 6, 3, 7
  got_mean, got_std = metrics.kernel_inception_distance(f1, f2, subsets, m, seed)
  k = lambda x, y: (np.dot(x, y) / 5 + 1) ** 3  # noqa: E731
  draw = np.random.default_rng(seed)
  mmds = []
  for _ in range(subsets):
    x = f1[draw.choice(12, m, replace=False)]
    y = f2[draw.choice(15, m, replace=False)]
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    mmds.append(sxx / (m * (m - 1)) + syy / (m * (m - 1)) - 2 * sxy / (m * m))
  assert got_mean == pytest.approx(np.mean(mmds), rel=1e-10)
  assert got_std == pytest.approx(np.std(mmds), rel=1e-10)


def test_inception_score_cases():
  k, splits = 8, 2
  confident = 50.0 * np.eye(k)[np.arange(k * splits) % k]
  assert metrics.inception_score(confident, splits)[0] == pytest.approx(k, rel=1e-6)
  assert metrics.inception_score(np.zeros((10, k)), 2) == pytest.approx((1.0, 0.0))
  logits = np.random.default_rng(5).standard_normal((20, k))
  scores = []
  for part in (logits[:10], logits[10:]):
    p = np.exp(part) / np.exp(part).sum(1, keepdims=True)
    py = p.mean(0)
    scores.append(math.exp(np.mean([np.sum(pi * np.log(pi / py)) for pi in p])))
  got = metrics.inception_score(logits, 2)
  assert got == pytest.approx((np.mean(scores), np.std(scores)), rel=1e-10)


def test_reference_stats_are_cached(tmp_path):
  calls = []
  feats = np.random.default_rng(6).standard_normal((50, 16))  # small d: sqrtm is O(d³)

  def compute():
    calls.append(1)
    return feats

  a = metrics.reference_stats(str(tmp_path / "w"), "cifar10/train", 50, compute)
  b = metrics.reference_stats(str(tmp_path / "w"), "cifar10/train", 50, compute)
  assert len(calls) == 1
  np.testing.assert_array_equal(a["mu"], b["mu"])
  np.testing.assert_allclose(b["sigma"], np.cov(feats.T), rtol=1e-12)
  assert os.path.basename(metrics.reference_stats_path("w", "cifar10/train", 50)) == \
      "fid_stats_cifar10_train_50.npz"
  c = metrics.reference_stats(str(tmp_path / "w"), "cifar10/train", 50, compute,
                              keep_features=True)  # cache lacks features: recompute
  assert len(calls) == 2 and c["features"].shape == (50, 16)
  sample = {"pool": feats[:20] + 0.1, "logits_unbiased": np.zeros((20, 1008))}
  m = metrics.sample_quality_metrics(sample, c, is_splits=2, kid_subsets=2,
                                     kid_subset_size=10)
  assert set(m) == {"fid", "is_mean", "is_std", "kid_mean", "kid_std"}
  assert m["is_mean"] == pytest.approx(1.0)


# ---- bits/dim -------------------------------------------------------------------------------


def _phi(x):
  return 0.5 * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


@pytest.fixture(scope="module")
def tiny_bpd():
  """T = 20 linear schedule, 8x8x1 data on the 8-bit grid, eps = a random linear map."""
  T, B = 20, 4
  process = diffusion.make_process(dict(variant="ddpm", schedule="linear", num_timesteps=T))
  rng = np.random.default_rng(7)
  W = (0.1 * rng.standard_normal((64, 64))).astype(np.float32)
  x0 = (rng.integers(0, 256, (B, 8, 8, 1)) / 127.5 - 1.0).astype(np.float32)

  def eps_fn(x, t):
    return (x.reshape(x.shape[0], -1) @ jnp.asarray(W)).reshape(x.shape)

  key = jax.random.PRNGKey(8)
  out = metrics.calc_bpd(eps_fn, process, x0, key, var_type="fixedlarge", clip_x0=True)
  return dict(T=T, process=process, W=W, x0=x0, eps_fn=eps_fn, key=key, out=out)


def test_bpd_terms_are_finite_and_sum_to_total(tiny_bpd):
  out, T = tiny_bpd["out"], tiny_bpd["T"]
  assert out["terms_bpd"].shape == (4, T) and out["total_bpd"].shape == (4,)
  for v in out.values():
    assert np.isfinite(np.asarray(v)).all()
  assert (np.asarray(out["terms_bpd"]) >= -1e-6).all()
  total = np.asarray(out["terms_bpd"], np.float64).sum(1) + np.asarray(out["prior_bpd"])
  np.testing.assert_allclose(np.asarray(out["total_bpd"]), total, rtol=1e-5)


def test_bpd_terms_against_numpy(tiny_bpd):
  """Recompute term_t (KL, t > 0), term_0 (decoder NLL) and L_T in float64 numpy."""
  T, W, x0, key = tiny_bpd["T"], tiny_bpd["W"], tiny_bpd["x0"], tiny_bpd["key"]
  out = tiny_bpd["out"]
  b = np.linspace(1e-4, 0.02, T)
  ab = np.cumprod(1 - b)
  ab_prev = np.append(1.0, ab[:-1])
  post = b * (1 - ab_prev) / (1 - ab)
  c1, c2 = b * np.sqrt(ab_prev) / (1 - ab), (1 - ab_prev) * np.sqrt(1 - b) / (1 - ab)
  x = x0.astype(np.float64).reshape(4, -1)
  for t in (T - 1, 7, 1, 0):
    noise = np.asarray(jax.random.normal(jax.random.fold_in(key, t), x0.shape),
                       np.float64).reshape(4, -1)
    xt = np.sqrt(ab[t]) * x + np.sqrt(1 - ab[t]) * noise
    eps = xt @ W.astype(np.float64)
    x0_hat = np.clip((xt - np.sqrt(1 - ab[t]) * eps) / np.sqrt(ab[t]), -1, 1)
    mean_p = c1[t] * x0_hat + c2[t] * xt
    logvar_p = np.log(b[t]) if t > 0 else np.log(post[1])  # fixedlarge
    if t > 0:
      mean_q = c1[t] * x + c2[t] * xt
      logvar_q = np.log(post[t])
      kl = 0.5 * (-1 + logvar_p - logvar_q + np.exp(logvar_q - logvar_p)
                  + (mean_q - mean_p) ** 2 * np.exp(-logvar_p))
      want = kl.mean(1) / np.log(2)
    else:
      inv = np.exp(-0.5 * logvar_p)
      plus, minus = _phi(inv * (x - mean_p + 1 / 255)), _phi(inv * (x - mean_p - 1 / 255))
      ll = np.where(x < -0.999, np.log(np.maximum(plus, 1e-12)),
                    np.where(x > 0.999, np.log(np.maximum(1 - minus, 1e-12)),
                             np.log(np.maximum(plus - minus, 1e-12))))
      want = -ll.mean(1) / np.log(2)
    np.testing.assert_allclose(np.asarray(out["terms_bpd"])[:, t], want, rtol=2e-3, atol=1e-5)
  prior = 0.5 * (-ab[-1] - np.log(1 - ab[-1]) + ab[-1] * x ** 2).mean(1) / np.log(2)
  np.testing.assert_allclose(np.asarray(out["prior_bpd"]), prior, rtol=1e-4)


def test_bpd_learned_variance_and_errors(tiny_bpd):
  p, eps_fn, x0, key = tiny_bpd["process"], tiny_bpd["eps_fn"], tiny_bpd["x0"], tiny_bpd["key"]
  learned = lambda x, t: (eps_fn(x, t), jnp.ones_like(x))  # noqa: E731  v = +1 -> log β_t
  out = metrics.calc_bpd(learned, p, x0, key, var_type="learned_range")
  # learned_range with v = 1 equals fixedlarge except at t = 0 (log β_0 vs log β̃_1).
  np.testing.assert_allclose(np.asarray(out["terms_bpd"])[:, 1:],
                             np.asarray(tiny_bpd["out"]["terms_bpd"])[:, 1:], rtol=1e-5)
  agg = metrics.evaluate_bpd(eps_fn, p, [x0[:2], x0[2:]], key)
  assert np.isfinite(agg["bpd"]) and agg["num_examples"] == 4 and agg["terms_bpd"].shape == (20,)
  ve = diffusion.make_process(dict(variant="ncsn"))
  with pytest.raises(ConfigError, match="bits/dim applies to VP"):
    metrics.calc_bpd(eps_fn, ve, x0, key)
  with pytest.raises(ConfigError, match="learned_range"):
    metrics.calc_bpd(eps_fn, p, x0, key, var_type="learned_range")


def test_bpd_in_segments_equals_one_scan():
  """The bound computed in ranges of t (to report progress) is the one-scan bound."""
  process = diffusion.make_process({"num_timesteps": 40})
  x0 = jax.random.uniform(jax.random.PRNGKey(0), (3, 4, 4, 1), minval=-1, maxval=1)
  x0 = (jnp.round((x0 + 1) * 127.5) / 127.5 - 1)
  eps_fn = lambda x, t: 0.1 * x   # noqa: E731 - any ε-model
  key = jax.random.PRNGKey(1)
  whole = metrics.calc_bpd(eps_fn, process, x0, key)
  reports = []
  parts = metrics.calc_bpd(eps_fn, process, x0, key,
                           on_progress=lambda done, total: reports.append((done, total)))
  for k in whole:
    np.testing.assert_allclose(np.asarray(parts[k]), np.asarray(whole[k]), rtol=1e-6,
                               atol=1e-7)
  assert reports[-1] == (40, 40) and len(reports) == 20

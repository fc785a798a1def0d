"""diffusion/families/vae.py: ELBO terms against float64 numpy, KL by Monte Carlo, the
importance-weighted bound, the reparameterization trick against the score-function
estimator, and the family's sampling record and pictures."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.vae import digits
from diffusion import families
from diffusion.families import vae


def tiny_config(**overrides):
  """configs/vae/digits.py with a small network and a few hundred steps."""
  config = digits.get_config()
  config.model.hidden_dims = (32,)
  config.model.latent_dim = 4
  config.training.num_train_steps = 40
  config.training.steps_per_call = 10
  config.training.log_every = 10
  config.training.checkpoint_every = 20
  config.training.sample_every = 0
  config.eval.elbo.every = 0
  for key, value in overrides.items():
    section, field = key.split(".")
    config[section][field] = value
  return config


@pytest.fixture(scope="module")
def small():
  family = families.make_family(tiny_config())
  params = family.init_params(jax.random.PRNGKey(0))
  # Non-trivial parameters: scale the random init up so outputs are far from zero.
  params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.PRNGKey(1), p.shape),
                        params)
  x = (np.random.default_rng(0).random((6, 8, 8, 1)) < 0.4).astype(np.float32)
  return family, params, x


def _numpy_mlp(params, prefix, h, n_hidden):
  h = np.asarray(h, np.float64)
  for i in range(n_hidden):
    layer = params[f"{prefix}_{i}"]
    h = np.maximum(h @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer["bias"]), 0)
  out = params[f"{prefix}_out"]
  return h @ np.asarray(out["kernel"], np.float64) + np.asarray(out["bias"], np.float64)


def test_elbo_terms_against_float64_numpy(small):
  family, params, x = small
  key = jax.random.PRNGKey(2)
  k = 3
  terms = vae.elbo_terms(family.encoder(params), family.decoder(params), jnp.asarray(x), key, k)
  # The same computation in float64 numpy, from the same ε.
  enc = _numpy_mlp(params, "enc", x.reshape(6, -1), 1)
  mean, log_var = enc[:, :4], enc[:, 4:]
  eps = np.asarray(jax.random.normal(key, (k, 6, 4)), np.float64)
  z = mean + np.exp(0.5 * log_var) * eps
  logits = _numpy_mlp(params, "dec", z.reshape(-1, 4), 1).reshape(k, 6, 64)
  xf = x.reshape(6, 64)
  log_px_z = np.sum(xf * -np.logaddexp(0, -logits) + (1 - xf) * -np.logaddexp(0, logits), -1)
  kl = 0.5 * np.sum(mean ** 2 + np.exp(log_var) - log_var - 1, -1)
  log_pz = -0.5 * np.sum(np.log(2 * np.pi) + z ** 2, -1)
  log_qz = -0.5 * np.sum(np.log(2 * np.pi) + log_var + (z - mean) ** 2 / np.exp(log_var), -1)
  log_w = log_px_z + log_pz - log_qz
  iw = np.log(np.mean(np.exp(log_w - log_w.max(0)), 0)) + log_w.max(0)
  np.testing.assert_allclose(terms["recon"], log_px_z.mean(0), rtol=1e-4)
  np.testing.assert_allclose(terms["kl"], kl, rtol=1e-4)
  np.testing.assert_allclose(terms["elbo"], log_px_z.mean(0) - kl, rtol=1e-4)
  np.testing.assert_allclose(terms["iw"], iw, rtol=1e-4)


def test_kl_matches_monte_carlo():
  """Analytic KL(N(μ, σ²) ‖ N(0, I)) against the mean of log q − log p over 200k draws
  (within 4 standard errors of that mean)."""
  mean = jnp.array([[0.5, -1.0, 2.0]])
  log_var = jnp.array([[-1.0, 0.3, -0.2]])
  z = vae.reparameterize(mean, log_var, jax.random.normal(jax.random.PRNGKey(3), (200_000, 1, 3)))
  diff = np.asarray(vae.gaussian_log_density(z, mean, log_var)
                    - vae.gaussian_log_density(z, 0.0, 0.0), np.float64)[:, 0]
  se = diff.std() / math.sqrt(len(diff))
  analytic = float(vae.kl_to_standard_normal(mean, log_var)[0])
  assert abs(diff.mean() - analytic) < 4 * se, (diff.mean(), analytic, se)


def test_iw_bound_is_above_the_elbo_and_grows_with_k(small):
  """E[L_1] <= E[L_10] <= E[L_100] (Burda et al. 2016, Thm 1), averaged over 256 copies
  of 6 examples; the gaps are many standard errors wide."""
  family, params, x = small
  enc, dec = family.encoder(params), family.decoder(params)
  xs = jnp.asarray(np.tile(x, (256, 1, 1, 1)))
  bounds = {}
  for k in (1, 10, 100):
    out = vae.iw_log_likelihood(enc, dec, xs, jax.random.PRNGKey(k), k, chunk=min(k, 50))
    bounds[k] = np.asarray(out["log_px"], np.float64)
  se = lambda a: a.std() / math.sqrt(len(a))  # noqa: E731
  assert bounds[10].mean() - bounds[1].mean() > 4 * se(bounds[1] - bounds[10])
  assert bounds[100].mean() - bounds[10].mean() > 4 * se(bounds[10] - bounds[100])
  elbo = np.asarray(vae.iw_log_likelihood(enc, dec, xs, jax.random.PRNGKey(9), 1)["elbo"])
  assert bounds[100].mean() > elbo.mean()


def test_reparameterization_beats_the_score_function_estimator():
  """∇_{μ,σ} E_{x~N(μ,σ²)}[f(x)] for f(x) = a x² + b x: closed form (2aμ + b, 2aσ).

  Both estimators are unbiased (checked within 4 SE with 100k draws); per draw, the
  reparameterized one, f'(μ + σε)·(1, ε), has variance 4a²σ²·(1, 2) + ... while the
  score-function one, f(x)·∇ log N(x; μ, σ), has a far larger one.
  """
  a, b, mu, sigma = 1.5, -0.7, 0.8, 0.6
  grad_exact = np.array([2 * a * mu + b, 2 * a * sigma])
  eps = np.asarray(jax.random.normal(jax.random.PRNGKey(4), (100_000,)), np.float64)

  def expectation(mu_sigma, eps):
    x = vae.reparameterize(mu_sigma[0], 2 * jnp.log(mu_sigma[1]), eps)   # log σ² = 2 log σ
    return a * x ** 2 + b * x
  per_draw = jax.vmap(jax.grad(lambda p, e: expectation(p, e)), in_axes=(None, 0))
  reparam = np.asarray(per_draw(jnp.array([mu, sigma]), jnp.asarray(eps)), np.float64)
  x = mu + sigma * eps
  f = a * x ** 2 + b * x
  score = np.stack([f * (x - mu) / sigma ** 2, f * ((x - mu) ** 2 - sigma ** 2) / sigma ** 3], 1)
  n = len(eps)
  for est in (reparam, score):
    assert np.all(np.abs(est.mean(0) - grad_exact) < 4 * est.std(0) / math.sqrt(n))
  var_reparam, var_score = reparam.var(0), score.var(0)
  # Closed forms of the reparameterized estimator's variance: Var[2a(μ+σε) + b] = 4a²σ²,
  # Var[(2a(μ+σε) + b) ε] = (2aμ + b)² + 8a²σ².
  np.testing.assert_allclose(var_reparam, [4 * a * a * sigma ** 2,
                                           (2 * a * mu + b) ** 2 + 8 * a * a * sigma ** 2],
                             rtol=0.03)
  assert np.all(var_score > 5 * var_reparam), (var_score, var_reparam)
  print(f"per-draw variance, reparameterization {var_reparam}, score function {var_score}")


def test_vae_sampling_record_and_extra_pictures(tmp_path):
  """The VAE describes its sampling as its output kind and one decoder pass, trains, and
  writes its pictures beside sample.py's samples (a 4-D latent: no manifold)."""
  family = families.make_family(tiny_config(**{"sampling.output": "bernoulli"}))
  record = family.sampling_record(steps_from="--steps")
  assert (record.sampler, record.steps, record.name, record.options, record.phrase) == (
      "bernoulli", 1, "bernoulli", {}, "one decoder pass")
  assert family.trainable
  key = jax.random.PRNGKey(0)
  written = family.write_extras(family.init_params(key), str(tmp_path), key)
  assert [os.path.basename(p) for p in written] == ["reconstructions.png", "prior_samples.png"]
  assert all(os.path.getsize(p) > 0 for p in written)

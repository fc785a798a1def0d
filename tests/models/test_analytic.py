"""diffusion/models/analytic.py: the exact ε of a Gaussian mixture is −σ times its score
(finite differences of the float64 log-density)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from configs.base import get_config
from diffusion import make_model
from diffusion.models import AnalyticMixture

from tests.models.test_unet import _model_cfg


WEIGHTS = (0.3, 0.7)
MEANS = ((1.0, -2.0, 0.5), (-1.5, 1.0, 2.0))
COVS = (((1.0, 0.6, -0.2), (0.6, 0.8, 0.1), (-0.2, 0.1, 0.5)),
        ((0.4, -0.3, 0.0), (-0.3, 1.5, 0.4), (0.0, 0.4, 0.9)))


def _np_log_p(x, a, s):
  """float64 log density of sum_k w_k N(a mu_k, a^2 Sigma_k + s^2 I) at one point x [D]."""
  terms = []
  for w, m, c in zip(WEIGHTS, MEANS, COVS):
    cov = a * a * np.asarray(c) + s * s * np.eye(3)
    terms.append(np.log(w) + stats.multivariate_normal(a * np.asarray(m), cov).logpdf(x))
  return logsumexp(terms)


def _np_grad(x, a, s, h=1e-5):
  """Central finite-difference gradient of _np_log_p (float64)."""
  grad = np.zeros_like(x)
  for i in range(x.size):
    e = np.zeros_like(x)
    e[i] = h
    grad[i] = (_np_log_p(x + e, a, s) - _np_log_p(x - e, a, s)) / (2 * h)
  return grad


@pytest.mark.parametrize("a, s", [
    (math.sqrt(0.6), math.sqrt(0.4)),      # VP: a = sqrt(alpha_bar), s = sqrt(1 - alpha_bar)
    (math.sqrt(0.999), math.sqrt(0.001)),  # VP near the data
    (1.0, 0.3),                            # VE: a = 1, s = sigma
    (1.0, 5.0),
])
def test_analytic_eps_is_minus_sigma_times_score(a, s):
  module = AnalyticMixture(WEIGHTS, MEANS, COVS)
  x = np.array([[0.0, 0.0, 0.0], [1.2, -1.8, 0.4], [-1.0, 0.5, 2.5], [3.0, 3.0, -3.0]])
  b = len(x)
  eps = np.asarray(module.apply({}, jnp.asarray(x, jnp.float32), jnp.full((b,), a),
                                jnp.full((b,), s)))
  logp = np.asarray(module.apply({}, jnp.asarray(x, jnp.float32), a, s,
                                 method=AnalyticMixture.log_prob))
  for i in range(b):
    ref = -s * _np_grad(x[i], a, s)
    assert np.linalg.norm(eps[i] - ref) <= 1e-4 * np.linalg.norm(ref), (i, eps[i], ref)
    np.testing.assert_allclose(logp[i], _np_log_p(x[i], a, s), rtol=1e-5)


def test_analytic_gaussian_over_images_and_config_mixture():
  mean = np.linspace(-0.5, 0.5, 48).reshape(4, 4, 3)
  std = 0.2
  module = AnalyticMixture.gaussian(mean, std)
  hash(module)                                           # tuples keep it hashable
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
  a, s = jnp.array([0.8, 1.0]), jnp.array([0.6, 0.05])
  eps = jax.jit(module.apply)({}, x, a, s)
  a4, s4 = np.asarray(a)[:, None, None, None], np.asarray(s)[:, None, None, None]
  ref = s4 * (np.asarray(x) - a4 * mean) / (a4 ** 2 * std ** 2 + s4 ** 2)
  assert eps.shape == x.shape
  np.testing.assert_allclose(eps, ref, rtol=1e-5, atol=1e-6)
  # The config mixture (NCSN toy: 0.8 N((5,5), I) + 0.2 N((-5,-5), I)).
  data = get_config("ncsn").data
  mix = make_model(_model_cfg(name="analytic"), data_cfg=data)
  pts = jnp.array([[5.0, 5.0], [-5.0, -5.0], [0.3, -0.1]])
  # Far from the (-5,-5) mode the mixture is one Gaussian N((5,5), (1 + s^2) I).
  out = np.asarray(mix.apply({}, pts, 1.0, 2.0))
  np.testing.assert_allclose(out[0], [0.0, 0.0], atol=1e-5)
  np.testing.assert_allclose(out[1], [0.0, 0.0], atol=1e-5)
  assert mix.init(jax.random.key(0), pts, 1.0, 2.0) == {}

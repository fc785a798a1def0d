"""diffusion/evals/ode_bpd.py: bits/dim by the probability-flow ODE against the closed-form
Gaussian log-density, and where it applies."""

import math

import jax
import numpy as np
import pytest

from diffusion.errors import ConfigError
from diffusion.models.analytic import AnalyticMixture

from tests.samplers.test_init import exact_eps
from tests.samplers.test_ode import _gaussian_ode_reference


def test_ode_bpd_of_images_closed_form(processes):
  """bits/dim = −log p(x)/(D ln 2) + 7 at the dequantized x (centered), against the
  closed-form Gaussian log-density at the same dequantization draw."""
  from diffusion.evals.ode_bpd import ode_bpd_of_images  # pylint: disable=import-outside-toplevel
  p = processes["vp"]
  rng = np.random.default_rng(4)
  images = rng.integers(60, 200, size=(6, 2, 2, 1)).astype(np.uint8)
  mu, s = np.zeros(4), np.full(4, 0.4)
  mix = AnalyticMixture.gaussian(mu.reshape(2, 2, 1), s.reshape(2, 2, 1))

  class Cfg:
    num_probes, probe, batch_size, ode_solver, rtol, atol = 2, "rademacher", 4, "tsit5", 1e-5, 1e-5

  key = jax.random.PRNGKey(7)
  res = ode_bpd_of_images(exact_eps(p, mix), p, images, True, key, Cfg)
  per = np.zeros((6, 2))
  for pr in range(2):
    for i in range(0, 6, 4):
      k_deq, _ = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, pr), i))
      k = np.asarray(images[i:i + 4], np.float32)
      u = (k + np.asarray(jax.random.uniform(k_deq, k.shape))) / 256.0
      x = (2 * u - 1).reshape(len(k), -1)
      _, true_ll = _gaussian_ode_reference(p, x, mu, np.diag(s ** 2))
      per[i:i + len(k), pr] = -true_ll / (4 * math.log(2)) + 7.0
  np.testing.assert_allclose(res["per_image"], per.mean(1), atol=2e-3)
  assert res["bpd_se"] > 0 and res["nfe"] > 0 and res["num_examples"] == 6


def test_ode_bpd_refuses_vae_and_toy():
  from diffusion.config import DiffusionRunConfig, VAERunConfig  # pylint: disable=import-outside-toplevel
  from diffusion.evals.ode_bpd import OdeBitsPerDim  # pylint: disable=import-outside-toplevel
  check_applies = OdeBitsPerDim.check_applies
  with pytest.raises(ConfigError, match="ode_bpd.*diffusion family"):
    check_applies(VAERunConfig())
  toy = DiffusionRunConfig.parse(dict(data=dict(dataset="swiss_roll")))
  with pytest.raises(ConfigError, match="2-D points"):
    check_applies(toy)

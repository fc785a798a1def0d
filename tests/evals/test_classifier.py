"""diffusion/evals/classifier.py: temperature scaling recovers a known overconfidence."""

import numpy as np


def test_fit_temperature_recovers_the_overconfidence_of_logits():
  """Labels drawn from softmax(z); a model that reports 3z is overconfident by T = 3.
  Temperature scaling (Guo et al. 2017) must find T ≈ 3 (20,000 draws: MC error ~2%)."""
  from diffusion.evals import classifier  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  z = rng.normal(0.0, 1.5, (20_000, 10))
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  labels = (p.cumsum(1) > rng.random((len(p), 1))).argmax(1)
  assert abs(classifier.fit_temperature(3.0 * z, labels) - 3.0) < 0.15
  assert abs(classifier.fit_temperature(z, labels) - 1.0) < 0.05

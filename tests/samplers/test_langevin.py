"""diffusion/samplers/langevin.py: NCSN's toy mixture (annealed Langevin recovers the
weights, plain Langevin does not) and both step forms with the final denoising against the
exact Gaussian law."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffusion
from diffusion import samplers

from tests.samplers.test_ancestral import N, TOL_SE


def _mixture_score(x, var):
  """Score of 0.8 N((5,5), var I) + 0.2 N((−5,−5), var I); x [B, 2], var [B, 1]."""
  means = jnp.array([[5.0, 5.0], [-5.0, -5.0]])
  d = x[:, None, :] - means[None]
  logits = jnp.log(jnp.array([0.8, 0.2]))[None] - 0.5 * jnp.sum(d ** 2, -1) / var
  r = jax.nn.softmax(logits, axis=1)
  return -jnp.sum(r[..., None] * d, axis=1) / var


def _share_in_main_mode(x):
  x = np.asarray(x)
  d1 = ((x - 5.0) ** 2).sum(1)
  d2 = ((x + 5.0) ** 2).sum(1)
  return float(np.mean(d1 < d2))


@pytest.fixture(scope="module")
def toy():
  ve = diffusion.make_process(dict(variant="ncsn", schedule="geometric", num_timesteps=10,
                                   sigma_min=1.0, sigma_max=20.0))
  init = jax.random.uniform(jax.random.PRNGKey(8), (1280, 2), minval=-8.0, maxval=8.0)
  return ve, init


def test_annealed_langevin_recovers_mixture_weights(toy):
  """docs/checkable_values.md item 29: NCSN toy, annealed share of the (5,5) mode ∈ [0.75, 0.83]."""
  ve, init = toy
  np.testing.assert_allclose(np.asarray(ve.sigmas), np.geomspace(1, 20, 10), rtol=1e-6)

  def eps_code(x, t):  # NCSN toy_runner: component std σ_i
    sigma = ve.noise_std(t)[:, None]
    return -sigma * _mixture_score(x, sigma ** 2)

  def eps_exact(x, t):  # exact perturbed density: component std √(1 + σ_i²)
    sigma = ve.noise_std(t)[:, None]
    return -sigma * _mixture_score(x, 1.0 + sigma ** 2)

  # The models helper's AnalyticMixture gives the same exact ε as eps_exact.
  from diffusion.models.analytic import AnalyticMixture  # pylint: disable=import-outside-toplevel
  mixture = AnalyticMixture.diagonal((0.8, 0.2), ((5.0, 5.0), (-5.0, -5.0)), (1.0, 1.0))
  eps_module = lambda x, t: mixture.apply({}, x, ve.signal_scale(t), ve.noise_std(t))  # noqa: E731,E501
  x_probe = init[:16] * 2.0
  t_probe = jnp.arange(16, dtype=jnp.int32) % 10
  np.testing.assert_allclose(np.asarray(eps_module(x_probe, t_probe)),
                             np.asarray(eps_exact(x_probe, t_probe)), rtol=1e-4, atol=1e-5)

  cfg = dict(method="annealed_langevin", n_steps_each=100, step_size=0.1,
             langevin_form="paper", denoise=False)
  for eps_fn in (eps_code, eps_exact):
    x = diffusion.sample(eps_fn, ve, init.shape, jax.random.PRNGKey(9), cfg, init=init)
    share = _share_in_main_mode(x)
    assert 0.75 <= share <= 0.83, share


def test_plain_langevin_misses_mixture_weights(toy):
  """docs/checkable_values.md item 29: plain Langevin (exact data score, ε = 0.1, 1000 steps) ≈ 0.5."""
  _, init = toy
  score = lambda x: _mixture_score(x, jnp.ones((x.shape[0], 1)))  # noqa: E731
  x = samplers.langevin_dynamics(score, init, jax.random.PRNGKey(10), 0.1, 1000, form="paper")
  share = _share_in_main_mode(x)
  assert 0.45 <= share <= 0.55, share


@pytest.mark.parametrize("form", ["code", "paper"])
def test_langevin_forms_and_denoise_follow_exact_gaussian_law(form):
  """Data N(0, 1): at level σ the score is −x/(1 + σ²), so each step is affine.

  code:  x ← (1 − α/v) x + √(2α) z;  paper: x ← (1 − α/(2v)) x + √α z;
  α = ε σ_i²/σ_min², v = 1 + σ_i²; denoise: x ← x (1 − σ_min²/v_min).
  The two forms give variances 2.54 vs 3.19 (> 6 SE apart) after 5 steps per level.
  """
  ve = diffusion.make_process(dict(variant="ncsn", num_timesteps=3, sigma_min=0.5,
                                   sigma_max=2.0))
  eps_fn = lambda x, t: ve.noise_std(t)[:, None] * x / (1.0 + ve.noise_std(t)[:, None] ** 2)  # noqa: E731,E501
  eps_size, k = 0.05, 5
  sig = np.geomspace(0.5, 2.0, 3)
  exact = {}
  for f in ("code", "paper"):
    v = np.float64(4.0)  # prior N(0, σ_max²)
    for s in sig[::-1]:
      alpha, var = eps_size * s * s / 0.25, 1.0 + s * s
      a, noise = ((1 - alpha / var), 2 * alpha) if f == "code" else ((1 - alpha / (2 * var)), alpha)
      for _ in range(k):
        v = a * a * v + noise
    exact[f] = (v, v * (1 - 0.25 / 1.25) ** 2)
  d = 8
  cfg = dict(method="annealed_langevin", n_steps_each=k, step_size=eps_size,
             langevin_form=form, denoise=False)
  for denoise in (False, True):
    x = diffusion.sample(eps_fn, ve, (N, d), jax.random.PRNGKey(11), dict(cfg, denoise=denoise))
    want = exact[form][int(denoise)]
    got = np.asarray(x, np.float64).var(0)
    se = want * np.sqrt(2.0 / N)
    assert np.abs(got - want).max() < TOL_SE * se, (form, denoise, got, want)
  other = exact["paper" if form == "code" else "code"][0]
  assert abs(other - exact[form][0]) > 6 * exact[form][0] * np.sqrt(2.0 / N)

"""Post-hoc EMA maths (EDM2, Karras et al. 2024, §3 and App. C): σ_rel <-> γ, the per-step
update, the profiles' inner products and the least-squares reconstruction, each against an
independent float64 computation (quadrature, the explicit weighted sum, a tracked EMA)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from diffusion.train import phema

STDS = (0.05, 0.10)   # EDM2's two tracked profiles


def _profile_std(gamma):
  """σ_rel by quadrature: the standard deviation of u = τ/t under density (γ+1) u^γ."""
  density = lambda u: (gamma + 1.0) * u ** gamma  # noqa: E731
  mean = integrate.quad(lambda u: u * density(u), 0.0, 1.0)[0]
  second = integrate.quad(lambda u: u * u * density(u), 0.0, 1.0)[0]
  return np.sqrt(second - mean ** 2)


@pytest.mark.parametrize("std", [0.01, 0.05, 0.1, 0.2, 0.28])
def test_gamma_of_a_relative_std_by_quadrature(std):
  gamma = float(phema.std_to_gamma(std))
  assert gamma > 0
  assert abs(_profile_std(gamma) - std) < 1e-10
  assert abs(float(phema.gamma_to_std(gamma)) - std) < 1e-12
  # EDM2's §3 values: σ_rel 0.05 and 0.10 are γ ≈ 16.97 and 6.94.
  if std == 0.05:
    assert abs(gamma - 16.97) < 0.01
  if std == 0.1:
    assert abs(gamma - 6.94) < 0.01


def test_gamma_refuses_stds_without_a_positive_exponent():
  for bad in (0.0, -0.1, 0.3, float("nan")):
    with pytest.raises(ValueError, match="std_rel must lie in"):
      phema.std_to_gamma(bad)
  np.testing.assert_allclose(phema.gamma_to_std(phema.std_to_gamma(np.array([[0.02, 0.15]]))),
                             [[0.02, 0.15]], rtol=1e-12)


def test_the_recursion_weights_each_step_by_the_profile_over_that_step():
  """The β recursion, run in float64 on one-hot trajectories, gives θ_τ the weight
  ∫_{τ-1}^{τ} p_t(u) du; the weights sum to one."""
  steps, gamma = 50, float(phema.std_to_gamma(0.1))
  recursion = np.zeros(steps)
  for t in range(1, steps + 1):       # the EMA of e_τ is the weight of θ_τ
    b = phema.beta(t, gamma)
    recursion *= b
    recursion[t - 1] += 1.0 - b
  quad = [integrate.quad(lambda u: (gamma + 1) * u ** gamma / steps ** (gamma + 1), tau - 1,
                         tau)[0] for tau in range(1, steps + 1)]
  np.testing.assert_allclose(recursion, quad, rtol=1e-9, atol=1e-15)
  np.testing.assert_allclose(phema.step_weights(steps, gamma), quad, rtol=1e-9, atol=1e-15)
  assert abs(recursion.sum() - 1.0) < 1e-12
  assert phema.beta(1, gamma) == 0.0


def test_jax_update_equals_the_explicit_weighted_sum():
  """update() inside jit (float32) against Σ_τ w_τ θ_τ in float64 numpy."""
  rng = np.random.default_rng(0)
  steps = 300
  trajectory = rng.normal(size=(steps, 7)).cumsum(axis=0) * 0.1
  gammas = [float(g) for g in phema.std_to_gamma(np.array(STDS))]
  emas = [{"w": jnp.zeros(7)} for _ in gammas]
  step_fn = jax.jit(lambda e, p, t: phema.update(e, p, t, gammas))
  for t in range(1, steps + 1):
    emas = step_fn(emas, {"w": jnp.asarray(trajectory[t - 1], jnp.float32)}, t)
  for ema, gamma in zip(emas, gammas):
    want = phema.step_weights(steps, gamma) @ trajectory
    np.testing.assert_allclose(np.asarray(ema["w"]), want, rtol=0, atol=2e-5)


@pytest.mark.parametrize("t_a,s_a,t_b,s_b", [(100, 0.05, 100, 0.05), (40, 0.05, 100, 0.1),
                                             (100, 0.1, 40, 0.05), (7, 0.2, 1000, 0.02)])
def test_inner_products_by_quadrature(t_a, s_a, t_b, s_b):
  g_a, g_b = float(phema.std_to_gamma(s_a)), float(phema.std_to_gamma(s_b))

  def p(t, g):
    return lambda u: (g + 1) * u ** g / t ** (g + 1) if u <= t else 0.0

  pa, pb = p(t_a, g_a), p(t_b, g_b)
  want = integrate.quad(lambda u: pa(u) * pb(u), 0.0, min(t_a, t_b), epsabs=0,
                        epsrel=1e-12, limit=200)[0]
  got = float(phema.profile_inner_products(t_a, g_a, t_b, g_b))
  assert abs(got - want) <= 1e-9 * want
  assert got == float(phema.profile_inner_products(t_b, g_b, t_a, g_a))   # symmetric


def _tracked(trajectory, stds, every):
  """EMA snapshots of the float32 trajectory (one row per step, τ = 1..T) for each σ_rel,
  every ``every`` steps: [(step, std, params)], and the final EMA of each profile."""
  gammas = [float(g) for g in phema.std_to_gamma(np.array(stds))]
  emas = [np.zeros(trajectory.shape[1], np.float32) for _ in stds]
  snapshots = []
  for t in range(1, len(trajectory) + 1):
    emas = [np.float32(phema.beta(t, g)) * e + np.float32(1 - phema.beta(t, g))
            * trajectory[t - 1] for e, g in zip(emas, gammas)]
    if t % every == 0:
      snapshots += [(t, s, {"w": e.copy()}) for s, e in zip(stds, emas)]
  return snapshots, emas


def test_reconstruction_at_a_tracked_profile_is_that_profile():
  """At a tracked profile's own σ_rel (and its last snapshot's step) the reconstruction
  equals the tracked EMA to 1e-4 relative."""
  rng = np.random.default_rng(1)
  trajectory = (rng.normal(size=(2000, 64)).cumsum(axis=0) * 0.01 + 1.0).astype(np.float32)
  snapshots, finals = _tracked(trajectory, STDS, every=200)
  steps = [s for s, _, _ in snapshots]
  stds = [d for _, d, _ in snapshots]
  for std, final in zip(STDS, finals):
    x = phema.solve_coefficients(steps, stds, 2000, std)[:, 0]
    got = phema.reconstruct([p for _, _, p in snapshots], x)["w"]
    rel = np.max(np.abs(got - final)) / np.max(np.abs(final))
    assert rel <= 1e-4, rel
    assert phema.profile_error(steps, stds, 2000, std) < 1e-6


def test_reconstruction_of_an_untracked_length_against_tracking_it():
  """σ_rel = 0.07 (between the two tracked ones) at the last step: the reconstruction from
  10 snapshots of each profile against a third EMA tracked with σ_rel 0.07 itself. The
  profiles' L2 misfit bounds the error: |Σ(p̂ − p)θ| ≤ ‖p̂ − p‖·‖θ‖ over the trajectory."""
  rng = np.random.default_rng(2)
  steps = 2000
  trajectory = (np.sin(np.linspace(0, 3, steps))[:, None] * rng.normal(size=(1, 32))
                + rng.normal(size=(steps, 32)).cumsum(axis=0) * 0.01).astype(np.float32)
  snapshots, _ = _tracked(trajectory, STDS, every=200)
  _, (direct,) = _tracked(trajectory, (0.07,), every=steps)
  x = phema.solve_coefficients([s for s, _, _ in snapshots], [d for _, d, _ in snapshots],
                               steps, 0.07)[:, 0]
  assert abs(x.sum() - 1.0) < 1e-12
  got = phema.reconstruct([p for _, _, p in snapshots], x)["w"]
  misfit = phema.profile_error([s for s, _, _ in snapshots], [d for _, d, _ in snapshots],
                               steps, 0.07)
  assert misfit < 0.02                   # two profiles x 10 snapshots span it closely (0.009)
  scale = np.max(np.abs(direct))
  assert np.max(np.abs(got - direct)) / scale < 0.005   # measured 0.001
  # A σ_rel far outside the tracked pair is reconstructed worse, and the misfit says so.
  assert phema.profile_error([s for s, _, _ in snapshots], [d for _, d, _ in snapshots],
                             steps, 0.25) > misfit


def test_reconstruct_checks_its_arguments():
  with pytest.raises(ValueError, match="2 snapshots but 3 coefficients"):
    phema.reconstruct([{"w": np.zeros(2)}] * 2, [1.0, 0.0, 0.0])
  with pytest.raises(ValueError, match="positive"):
    phema.solve_coefficients([0, 10], [0.05, 0.1], 10, 0.07)

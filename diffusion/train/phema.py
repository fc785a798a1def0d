"""Post-hoc EMA: power-function EMA profiles and their least-squares reconstruction.

Karras et al. 2024, "Analyzing and Improving the Training Dynamics of Diffusion Models"
(EDM2), §3 and App. C. Time is counted in optimizer steps: step t is the state after t
updates (θ_1 is the first updated parameter vector).

A power-function EMA of exponent γ averages the training trajectory with weights that grow
like τ^γ up to the current step t (eq. 121, normalised over [0, t]):

  p_t(τ) = (γ + 1) τ^γ / t^(γ+1),   0 ≤ τ ≤ t.

Its width relative to the training length, σ_rel, is the standard deviation of τ/t under
that density (eq. 123):

  σ_rel² = (γ + 1) / ((γ + 2)² (γ + 3)),

so a σ_rel names a γ: the largest real root of γ³ + 7γ² + (16 − σ_rel⁻²)γ + (12 − σ_rel⁻²)
(eq. 126, App. C.2, Algorithm 2). During training it is tracked by an EMA whose decay
changes every step (eq. 127 with one step per update):

  θ̂_t = β_t θ̂_{t−1} + (1 − β_t) θ_t,   β_t = (1 − 1/t)^(γ+1).

The products of β telescope, Π_{s=τ+1..t} β_s = (τ/t)^(γ+1), so θ̂_t weights θ_τ by
(τ^(γ+1) − (τ−1)^(γ+1)) / t^(γ+1): exactly p_t integrated over the step (τ − 1, τ]. The
EMA of a piecewise-constant trajectory is therefore the continuous profile's average, and
the reconstruction below is exact in that sense, not an approximation of a recursion.

Post hoc (App. C.3): snapshots θ̂_i of two or more profiles (γ_i) taken at steps t_i span
a space of profiles; the profile of any other σ_rel at any step t_r is approximated by
Σ_i x_i p_{t_i}(τ), with x the least-squares solution of

  A x = b,   A_ij = ⟨p_i, p_j⟩,   b_i = ⟨p_i, p_r⟩,   ⟨f, g⟩ = ∫_0^∞ f(τ) g(τ) dτ,

whose closed form for two power profiles (eq. 151, Algorithm 3), with t_a ≤ t_b, is

  ⟨p_a, p_b⟩ = (γ_a + 1)(γ_b + 1) (t_a / t_b)^γ_b / ((γ_a + γ_b + 1) t_b),

and the same x weights the stored snapshots: θ̂_r = Σ_i x_i θ̂_i. EDM2 then rescales x to
sum to one (the weights of an average). Everything on the host is float64 numpy; only
:func:`update` is JAX (it runs inside the training step).
"""

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def std_to_gamma(std_rel) -> np.ndarray:
  """γ of the power profile whose relative standard deviation is ``std_rel`` (eq. 126,
  Algorithm 2), float64, the shape of ``std_rel``.

  Args:
    std_rel: σ_rel, each in (0, 12^(-1/2)) (12^(-1/2) ≈ 0.289 is γ = 0, the uniform
      average of the whole run; a longer one would need γ < 0).
  Raises:
    ValueError: a σ_rel outside that range.
  """
  std = np.asarray(std_rel, np.float64)
  if np.any(~np.isfinite(std)) or np.any(std <= 0) or np.any(std >= 12 ** -0.5):
    raise ValueError(f"std_rel must lie in (0, {12 ** -0.5:.4f}) (gamma > 0); got {std_rel}.")
  inv = std.reshape(-1) ** -2
  roots = [np.roots([1.0, 7.0, 16.0 - s, 12.0 - s]) for s in inv]
  # The largest real root (the cubic has one or three; round-off leaves tiny imaginary parts).
  gamma = [r[np.abs(r.imag) <= 1e-7 * (1.0 + np.abs(r.real))].real.max() for r in roots]
  return np.asarray(gamma, np.float64).reshape(std.shape)


def gamma_to_std(gamma) -> np.ndarray:
  """σ_rel of the power profile of exponent γ (eq. 123), float64."""
  g = np.asarray(gamma, np.float64)
  return np.sqrt((g + 1.0) / ((g + 2.0) ** 2 * (g + 3.0)))


def beta(step, gamma) -> np.ndarray:
  """The decay of the update that makes ``step`` (≥ 1) from ``step − 1``: (1 − 1/t)^(γ+1)
  (eq. 127, one step per update); 0 at step 1, where the EMA becomes θ_1."""
  t = np.asarray(step, np.float64)
  return (1.0 - 1.0 / t) ** (np.asarray(gamma, np.float64) + 1.0)


def update(emas: Sequence[Any], params: Any, step: jax.Array, gammas: Sequence[float]):
  """One EMA update of every tracked profile, inside the (jitted) training step.

  Args:
    emas: one parameter tree per profile (the averages after ``step − 1`` updates).
    params: the parameters after update number ``step``.
    step: the number of updates applied so far, t ≥ 1 (int scalar, may be traced).
    gammas: each profile's exponent (:func:`std_to_gamma`), Python floats.
  Returns:
    the trees after ``step``, as a list in the order of ``emas``. β is computed in
    float32 from t; float32 represents (1 − 1/t) to 6e-8 relative for t < 2^24 steps.
  """
  t = jnp.asarray(step, jnp.float32)
  out = []
  for ema, gamma in zip(emas, gammas):
    b = (1.0 - 1.0 / t) ** (gamma + 1.0)
    out.append(jax.tree.map(lambda e, p, b=b: b * e + (1.0 - b) * p, ema, params))
  return out


def step_weights(step: int, gamma: float) -> np.ndarray:
  """The weight of θ_τ, τ = 1..step, in the EMA after ``step`` updates: the telescoped
  products of :func:`beta`, (τ^(γ+1) − (τ−1)^(γ+1)) / t^(γ+1), float64 [step]; they sum
  to one."""
  tau = np.arange(1, int(step) + 1, dtype=np.float64)
  g1 = float(gamma) + 1.0
  return ((tau / step) ** g1) - (((tau - 1.0) / step) ** g1)


def profile_inner_products(t_a, gamma_a, t_b, gamma_b) -> np.ndarray:
  """⟨p_a, p_b⟩ = ∫ p_{t_a}(τ) p_{t_b}(τ) dτ of power profiles (eq. 151), float64,
  broadcasting its arguments; steps t > 0, exponents γ > 0. Units: 1/step."""
  t_a, g_a, t_b, g_b = (np.asarray(v, np.float64) for v in (t_a, gamma_a, t_b, gamma_b))
  short, long_ = np.minimum(t_a, t_b), np.maximum(t_a, t_b)
  # The shorter profile's exponent drops out: (t_a/t_b)^γ_b when t_a ≤ t_b (and with a
  # and b swapped otherwise), from ∫_0^min τ^(γa+γb) dτ.
  g_long = np.where(t_a <= t_b, g_b, g_a)
  return ((g_a + 1.0) * (g_b + 1.0) * (short / long_) ** g_long
          / ((g_a + g_b + 1.0) * long_))


def solve_coefficients(snapshot_steps, snapshot_stds, target_steps, target_stds,
                       normalize: bool = True) -> np.ndarray:
  """The least-squares weights of the stored snapshots for each target profile (App. C.3,
  Algorithm 3).

  Args:
    snapshot_steps, snapshot_stds: [n] the step and σ_rel of every stored snapshot.
    target_steps, target_stds: [m] (or scalars) the step and σ_rel to reconstruct.
    normalize: rescale each column to sum to one (EDM2: the weights of an average).
  Returns:
    x, float64 [n, m]: target j ≈ Σ_i x[i, j] · snapshot i.
  """
  ts, ss = np.broadcast_arrays(np.asarray(snapshot_steps, np.float64).reshape(-1),
                               np.asarray(snapshot_stds, np.float64).reshape(-1))
  tr, sr = np.broadcast_arrays(np.asarray(target_steps, np.float64).reshape(-1),
                               np.asarray(target_stds, np.float64).reshape(-1))
  if np.any(ts <= 0) or np.any(tr <= 0):
    raise ValueError("snapshot and target steps must be positive (a profile at step 0 is "
                     "the initial parameters, not an average).")
  gs, gr = std_to_gamma(ss), std_to_gamma(sr)
  a = profile_inner_products(ts[:, None], gs[:, None], ts[None, :], gs[None, :])
  b = profile_inner_products(ts[:, None], gs[:, None], tr[None, :], gr[None, :])
  # lstsq rather than solve: snapshots of nearly the same profile make A nearly singular,
  # and the minimum-norm solution keeps the weights (and float32 round-off) small.
  x = np.linalg.lstsq(a, b, rcond=None)[0]
  if normalize:
    x = x / np.sum(x, axis=0, keepdims=True)
  return x


def reconstruct(snapshots: Sequence[Any], coefficients) -> Any:
  """Σ_i x_i θ̂_i over parameter trees (summed in float64 on the host, returned in each
  leaf's dtype).

  Args:
    snapshots: n parameter trees of one structure.
    coefficients: [n] weights (a column of :func:`solve_coefficients`).
  """
  x = np.asarray(coefficients, np.float64).reshape(-1)
  if len(x) != len(snapshots):
    raise ValueError(f"reconstruct: {len(snapshots)} snapshots but {len(x)} coefficients.")

  def combine(*leaves):
    total = sum(w * np.asarray(leaf, np.float64) for w, leaf in zip(x, leaves))
    return np.asarray(total, np.asarray(leaves[0]).dtype)

  return jax.tree.map(combine, *snapshots)


def profile_error(snapshot_steps, snapshot_stds, target_step, target_std) -> float:
  """How well the snapshots span a target profile: ‖Σ x_i p_i − p_r‖ / ‖p_r‖ in L2 over τ
  (normalised weights), from the same inner products; 0 when the target is a snapshot."""
  x = solve_coefficients(snapshot_steps, snapshot_stds, target_step, target_std)[:, 0]
  ts = np.asarray(snapshot_steps, np.float64).reshape(-1)
  gs = std_to_gamma(np.broadcast_to(np.asarray(snapshot_stds, np.float64), ts.shape))
  gr = float(std_to_gamma(target_std))
  a = profile_inner_products(ts[:, None], gs[:, None], ts[None, :], gs[None, :])
  b = profile_inner_products(ts, gs, target_step, gr)
  rr = float(profile_inner_products(target_step, gr, target_step, gr))
  err2 = float(x @ a @ x - 2.0 * x @ b + rr)
  return float(np.sqrt(max(err2, 0.0) / rr))

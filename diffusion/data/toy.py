"""Generated 2-D toy distributions, drawn fresh from a PRNG key (no files).

Each sampler is ``sampler(key, n) -> float32 [n, D]`` and is jittable with a
static ``n``. Their exact definitions (what the tests check by Monte Carlo):

* ``swiss_roll`` (DPM, Sohl-Dickstein et al. 2015, Fig. 1): the (x, z)
  projection of scikit-learn's ``make_swiss_roll``: t = 1.5π(1 + 2u),
  u ~ U[0, 1), point = (t cos t, t sin t) + 0.5·N(0, I), then scaled by 1/10
  (``SWISS_ROLL_NOISE``, ``SWISS_ROLL_SCALE``), so it spans about [-1, 1.3]².
* ``swiss_roll_unit`` (DPM Table 1): the same roll with jitter 0.3 before scaling (a
  public reimplementation's choice; the paper's generator is not published), then
  z-scored as the DPM code does its data, by one constant for all coordinates:
  x ← (x − m)·c with m = 1.10610 and c = 0.1458947, the mean and 1/std of all
  coordinates (computed by quadrature; ``tests/data/test_toy.py`` checks them), so the
  data have variance 1 as Table 1's caption says and L_null = −log2(2πe) bits.
* ``mixture`` (NCSN, Song & Ermon 2019, Figs. 2–3): Σ_k w_k N(μ_k, σ_k² I) from
  ``data.mixture_weights / mixture_means / mixture_stds``; the default is
  0.8·N((5, 5), I) + 0.2·N((−5, −5), I). Same parameters as the analytic model.
* ``eight_gaussians``: 8 equal-weight N(μ_k, s² I) with μ_k = r(cos kπ/4,
  sin kπ/4), r = 2√2, s = 1/(2√2) — the usual normalising-flow toy at
  that scale (``EIGHT_GAUSSIANS_RADIUS``, ``EIGHT_GAUSSIANS_STD``).
* ``checkerboard``: uniform on the 8 "black" squares of a 4×4 board of side-2
  squares covering [−4, 4)²; black means ⌊x/2⌋ + ⌊y/2⌋ is even.
"""

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

SWISS_ROLL_NOISE = 0.5    # std of the Gaussian jitter, before scaling
SWISS_ROLL_SCALE = 0.1    # multiplies the roll (sklearn units -> about unit range)
UNIT_ROLL_NOISE = 0.3     # swiss_roll_unit's jitter, sklearn units
UNIT_ROLL_MEAN = 1.10610  # mean of all coordinates of that roll
UNIT_ROLL_SCALE = 0.1458947   # 1 / their standard deviation
EIGHT_GAUSSIANS_RADIUS = 2.0 * math.sqrt(2.0)
EIGHT_GAUSSIANS_STD = 1.0 / (2.0 * math.sqrt(2.0))
CHECKERBOARD_SQUARE = 2.0  # side of one square; the board covers [-4, 4)^2

Sampler = Callable[[jax.Array, int], jax.Array]


def swiss_roll(key: jax.Array, n: int) -> jax.Array:
  """[n, 2] float32 swiss-roll points (see module docstring for the scale)."""
  k_t, k_noise = jax.random.split(key)
  t = 1.5 * jnp.pi * (1.0 + 2.0 * jax.random.uniform(k_t, (n,)))
  roll = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], axis=-1)
  roll = roll + SWISS_ROLL_NOISE * jax.random.normal(k_noise, (n, 2))
  return (SWISS_ROLL_SCALE * roll).astype(jnp.float32)


def swiss_roll_unit(key: jax.Array, n: int) -> jax.Array:
  """[n, 2] float32: DPM Table 1's swiss roll, z-scored to variance 1 (module docstring)."""
  k_t, k_noise = jax.random.split(key)
  t = 1.5 * jnp.pi * (1.0 + 2.0 * jax.random.uniform(k_t, (n,)))
  roll = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], axis=-1)
  roll = roll + UNIT_ROLL_NOISE * jax.random.normal(k_noise, (n, 2))
  return ((roll - UNIT_ROLL_MEAN) * UNIT_ROLL_SCALE).astype(jnp.float32)


def swiss_roll_unit_log_density(x: np.ndarray, grid: int = 20_000) -> np.ndarray:
  """log p(x) in nats of ``swiss_roll_unit`` (float64): the t-integral of the Gaussian
  jitter around the roll, by the midpoint rule on ``grid`` points of t (x [N, 2])."""
  x = np.asarray(x, np.float64)
  t = 1.5 * np.pi * (1.0 + 2.0 * (np.arange(grid) + 0.5) / grid)
  centres = (np.stack([t * np.cos(t), t * np.sin(t)], -1) - UNIT_ROLL_MEAN) * UNIT_ROLL_SCALE
  s2 = (UNIT_ROLL_NOISE * UNIT_ROLL_SCALE) ** 2
  out = np.empty(len(x))
  for i in range(0, len(x), 256):
    d2 = ((x[i:i + 256, None, :] - centres[None]) ** 2).sum(-1)
    log_terms = -d2 / (2 * s2) - np.log(2 * np.pi * s2) - np.log(grid)
    m = log_terms.max(1, keepdims=True)
    out[i:i + 256] = (m + np.log(np.exp(log_terms - m).sum(1, keepdims=True)))[:, 0]
  return out


def gaussian_mixture(weights: Sequence[float], means: Sequence[Sequence[float]],
                     stds: Sequence[float]) -> Sampler:
  """Sampler for Σ_k w_k N(μ_k, σ_k² I); weights are normalised to sum 1.

  Args:
    weights: [K] non-negative.
    means: [K, D].
    stds: [K] isotropic standard deviation per component.
  """
  logits = jnp.log(jnp.asarray(np.asarray(weights, np.float64) / np.sum(weights),
                               jnp.float32))
  mu = jnp.asarray(means, jnp.float32)
  sd = jnp.asarray(stds, jnp.float32)

  def sample(key: jax.Array, n: int) -> jax.Array:
    k_comp, k_noise = jax.random.split(key)
    comp = jax.random.categorical(k_comp, logits, shape=(n,))
    z = jax.random.normal(k_noise, (n, mu.shape[1]))
    return mu[comp] + sd[comp][:, None] * z

  return sample


def eight_gaussians(key: jax.Array, n: int) -> jax.Array:
  """[n, 2] float32 points from 8 equal Gaussians on a circle of radius 2√2."""
  angles = jnp.arange(8) * (jnp.pi / 4)
  means = EIGHT_GAUSSIANS_RADIUS * jnp.stack([jnp.cos(angles), jnp.sin(angles)], -1)
  k_comp, k_noise = jax.random.split(key)
  comp = jax.random.randint(k_comp, (n,), 0, 8)
  return means[comp] + EIGHT_GAUSSIANS_STD * jax.random.normal(k_noise, (n, 2))


def checkerboard(key: jax.Array, n: int) -> jax.Array:
  """[n, 2] float32 points uniform on the black squares of [-4, 4)^2."""
  k_col, k_row, k_off = jax.random.split(key, 3)
  col = jax.random.randint(k_col, (n,), -2, 2)          # square column, -2..1
  # Rows of the same parity as the column make (col + row) even: two per column.
  row = 2 * jax.random.randint(k_row, (n,), -1, 1) + jnp.mod(col, 2)
  corner = jnp.stack([col, row], axis=-1).astype(jnp.float32)
  offset = jax.random.uniform(k_off, (n, 2))
  return CHECKERBOARD_SQUARE * (corner + offset)


TOY_SAMPLERS = {
    "swiss_roll": swiss_roll,
    "swiss_roll_unit": swiss_roll_unit,
    "eight_gaussians": eight_gaussians,
    "checkerboard": checkerboard,
    # "mixture" is built from config by gaussian_mixture(...).
}

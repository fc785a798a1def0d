"""Generated 2-D toy distributions, drawn fresh from a PRNG key (no files).

Each sampler is ``sampler(key, n) -> float32 [n, D]`` and is jittable with a
static ``n``. Their exact definitions (what the tests check by Monte Carlo):

* ``swiss_roll`` (DPM, Sohl-Dickstein et al. 2015, Fig. 1): the (x, z)
  projection of scikit-learn's ``make_swiss_roll``: t = 1.5π(1 + 2u),
  u ~ U[0, 1), point = (t cos t, t sin t) + 0.5·N(0, I), then scaled by 1/10
  (``SWISS_ROLL_NOISE``, ``SWISS_ROLL_SCALE``), so it spans about [-1, 1.3]².
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
    "eight_gaussians": eight_gaussians,
    "checkerboard": checkerboard,
    # "mixture" is built from config by gaussian_mixture(...).
}

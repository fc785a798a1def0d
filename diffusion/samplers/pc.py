"""Predictor–corrector sampling (Song et al. 2021, score_sde, Algorithms 2 (VE) and 3 (VP)).

Order: the paper's — at each level first the predictor (level i+1 -> i), then
``n_corrector`` Langevin corrector steps at the new level i. (score_sde's code
``pc_sampler`` runs the corrector first, at the level it is leaving.) The chain
starts from the prior at the top level and ends with a noiseless predictor step
from level 0 to the data (σ_{−1} = 0, ᾱ_{−1} = 1; score_sde's ``noise_removal``,
which returns x_mean).

Score s = −ε̂/n_i (n the noise std of the level). With β_i = 1 − ᾱ_i/ᾱ_{i−1}
(VP) and Δ_i = σ_i² − σ_{i−1}² (VE) of the visited levels:
  predictor 'reverse_diffusion' (score_sde ReverseDiffusionPredictor on the
    discretised SDE):  VP x ← (2 − √(1 − β)) x + β s + √β z;  VE x ← x + Δ s + √Δ z
  predictor 'euler_maruyama' (the reverse SDE, β(t)dt = β_i):
    VP x ← (1 + β/2) x + β s + √β z;  VE same as reverse diffusion
  corrector (Alg. 4/5): ε = 2 α_i (snr ‖z‖/‖s‖)², α_i = 1 − β_i (VP) or 1 (VE),
    x ← x + ε s + √(2ε) z, with ‖·‖ the batch mean of the per-sample norms
    (score_sde's code; the paper's per-sample norms give unbounded steps where
    s ≈ 0, e.g. at the modes of low-dimensional data).

num_steps = number of levels visited L (0 = all T; fewer respaces as ancestral).
NFE = L (1 + n_corrector) − n_corrector. Recommended: all levels with
n_corrector = 1, snr = 0.16 (score_sde's VE CIFAR-10 setting: 1000 levels, 2000
NFE); for VP score_sde uses reverse diffusion / Euler–Maruyama with snr 0.01–0.16.
"""

import jax.numpy as jnp
import numpy as np
from flax.core import FrozenDict

from diffusion.options import NONNEGATIVE, POSITIVE, Option, declare
from diffusion.samplers.chain import NUM_STEPS, Plan, f32
from diffusion.samplers.sigmas import eps_at
from diffusion.samplers.timesteps import space_timesteps

DESCRIPTION = "score_sde's predictor-corrector (Song et al. 2021, Alg. 2 VE / Alg. 3 VP)"
PREDICTORS = ("reverse_diffusion", "euler_maruyama")


def pc_rows(process, *, num_steps: int, predictor: str, n_corrector: int) -> dict:
  """float64 rows of the whole chain, first row first.

  Returns dict of arrays [R]: model_t, std (noise std of the row's level, for the
  score), corrector (1/0), c_x, c_s, g (predictor: x ← c_x x + c_s s + g z),
  alpha (corrector's α).
  """
  T = process.num_timesteps
  kept = np.arange(T)
  if num_steps not in (0, T):
    kept = space_timesteps(T, str(num_steps))
  scale, std = process.host_marginal()
  a2, n = scale[kept] ** 2, std[kept]
  L = len(kept)
  if process.kind == "vp":
    step_var = 1.0 - a2 / np.append(1.0, a2[:-1])                      # β_i of the visited levels
  else:
    step_var = n ** 2 - np.append(0.0, n[:-1] ** 2)                    # Δ_i = σ_i² − σ_{i−1}²
  rows = []
  for i in range(L - 1, -1, -1):                                       # predictor i -> i−1
    b = step_var[i]
    if process.kind == "vp":
      c_x = 2.0 - np.sqrt(1.0 - b) if predictor == "reverse_diffusion" else 1.0 + b / 2
    else:
      c_x = 1.0
    g = np.sqrt(b) if i > 0 else 0.0                                   # noise removal at the end
    rows.append((kept[i], n[i], 0.0, c_x, b, g, 0.0))
    if i > 0:
      alpha = 1.0 - step_var[i - 1] if process.kind == "vp" else 1.0
      rows += [(kept[i - 1], n[i - 1], 1.0, 0.0, 0.0, 0.0, alpha)] * n_corrector
  cols = np.asarray(rows, np.float64).T
  names = ("model_t", "std", "corrector", "c_x", "c_s", "g", "alpha")
  return {k: (c.astype(np.int64) if k == "model_t" else c) for k, c in zip(names, cols)}


def make_plan(process, *, num_steps: int = 0, predictor: str = "reverse_diffusion",
              n_corrector: int = 1, snr: float = 0.16) -> Plan:
  """The predictor-corrector chain over ``num_steps`` levels (0 = all), with
  ``n_corrector`` Langevin steps of signal-to-noise ratio ``snr`` at each."""
  r = pc_rows(process, num_steps=num_steps, predictor=predictor, n_corrector=n_corrector)
  rows = {k: (jnp.asarray(v.astype(np.int32)) if k == "model_t" else f32(v))
          for k, v in r.items()}
  return Plan(rows, process, step, options=FrozenDict(snr=float(snr)))


OPTIONS = declare(
    make_plan, num_steps=NUM_STEPS,
    predictor=Option("predictor: reverse_diffusion or euler_maruyama (score_sde)",
                     choices=PREDICTORS),
    n_corrector=Option("Langevin corrector steps per level (score_sde: 1)", rule=NONNEGATIVE),
    snr=Option("corrector signal-to-noise ratio r (score_sde CIFAR-10: 0.16)", rule=POSITIVE))


def _norm(v):
  """Batch mean of the per-sample L2 norms (score_sde's LangevinCorrector)."""
  return jnp.mean(jnp.sqrt(jnp.sum(v.reshape(v.shape[0], -1) ** 2, axis=1)))


def step(eps_fn, plan: Plan, x0_range, x, row, z):
  del x0_range
  score = -eps_at(eps_fn, x, row["model_t"]) / row["std"]            # s = −ε̂/n
  pred = row["c_x"] * x + row["c_s"] * score + row["g"] * z          # Alg. 2/3 predictor
  eps = 2.0 * row["alpha"] * (plan.options["snr"] * _norm(z) / _norm(score)) ** 2  # Alg. 4/5 step
  corr = x + eps * score + jnp.sqrt(2.0 * eps) * z                   # Langevin corrector
  return jnp.where(row["corrector"] > 0, corr, pred)

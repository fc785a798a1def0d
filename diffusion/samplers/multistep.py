"""The step of the linear multistep samplers (DPM-Solver++, DEIS, iPNDM) and their plan;
the network evaluations they (and UniPC) report.

Each of these samplers evaluates the network once per step, at the point it stands on,
and moves on by a fixed linear combination of the point and of its last few predictions
(the coefficients come from its own paper, computed in float64 on the host):

  p_i = the prediction at t_i: the data x_θ = (x − σ ε̂)/α (``predict='x0'``) or ε̂
        (``predict='eps'``), with x_θ clipped to the data range when the plan clips
        (DPM-Solver++'s static thresholding; for ε, ε̂ is recomputed from the clipped x_θ)
  x_{i+1} = a_i x_i + b0_i p_i + b1_i p_{i−1} + b2_i p_{i−2} + b3_i p_{i−3} + g_i z_i

Rows ([M] tables, one per step): model_t (the level t_i: int32, or float32 fractional
levels), alpha, sigma (α, σ at t_i), a, b0..b3, g. The memory holds the last
:data:`HISTORY` predictions (zeros at x_T; a warm-up step weighs them 0).
"""

from typing import Dict, Tuple

import jax.numpy as jnp
import numpy as np
from flax.core import FrozenDict

from diffusion.samplers.chain import Plan, f32, level_rows
from diffusion.samplers.sigmas import data_prediction, eps_at

HISTORY = 3
PREDICTIONS = ("x0", "eps")


def network_evaluations(options, default_steps: int) -> int:
  """The network evaluations of one sampling: one per step (``num_steps``, 0 for the
  sampler's ``default_steps``) and one more for the final denoising step when
  ``denoise``."""
  return (options["num_steps"] or default_steps) + int(options["denoise"])


def no_predictions(x) -> Tuple:
  """The memory at x_T: no earlier predictions (zeros, weighted 0 by the warm-up)."""
  return (jnp.zeros_like(x),) * HISTORY


def make_plan(process, rows: Dict[str, np.ndarray], *, predict: str, clip_x0: bool,
              noise: bool = False, final=None) -> Plan:
  """The chain of float64 ``rows`` (module doc; b1..b3 and g default to 0).

  ``final`` = (level, α, σ) of the last point: with it, one more evaluation returns x_θ
  there (DPM-Solver's ``denoise_to_zero``)."""
  m = len(rows["a"])
  table = {k: f32(rows.get(k, np.zeros(m))) for k in ("alpha", "sigma", "a", "b0", "b1",
                                                      "b2", "b3", "g")}
  table["model_t"] = level_rows(rows["model_t"])
  return Plan(table, process, step, denoise_step if final is not None else None,
              options=FrozenDict(predict=predict, clip_x0=bool(clip_x0), noise=bool(noise),
                                 final=final),
              memory=no_predictions)


def final_point(levels: np.ndarray, alpha: np.ndarray, sigma: np.ndarray):
  """(level, α, σ) of the last point of a grid, as hashable python numbers."""
  last = np.asarray(levels)[-1]
  level = int(last) if np.issubdtype(np.asarray(levels).dtype, np.integer) else float(last)
  return level, float(alpha[-1]), float(sigma[-1])


def prediction(eps_fn, plan: Plan, x0_range, x, row):
  """p_i of the module doc at the row's level."""
  clip = x0_range if plan.options["clip_x0"] else None
  if plan.options["predict"] == "x0":
    return data_prediction(eps_fn, x, row["model_t"], row["alpha"], row["sigma"], clip)
  eps = eps_at(eps_fn, x, row["model_t"])
  if clip is None:
    return eps
  x0 = jnp.clip((x - row["sigma"] * eps) / row["alpha"], clip[0], clip[1])
  return (x - row["alpha"] * x0) / row["sigma"]                      # ε̂ of the clipped x_θ


def step(eps_fn, plan: Plan, x0_range, state, row, z):
  x, past = state
  p = prediction(eps_fn, plan, x0_range, x, row)
  x = (row["a"] * x + row["b0"] * p + row["b1"] * past[0] + row["b2"] * past[1]
       + row["b3"] * past[2])
  if plan.options["noise"]:
    x = x + row["g"] * z
  return x, (p,) + past[:-1]


def denoise_step(eps_fn, plan: Plan, x):
  """x_θ at the last point (DPM-Solver's denoise_to_zero, score_sde's noise removal)."""
  level, alpha, sigma = plan.options["final"]
  return data_prediction(eps_fn, x, level, alpha, sigma)

"""DDPM ancestral sampling (Ho et al. 2020, Algorithm 2), respaced when shortened.

x_{t−1} = μ_θ(x_t, t) + 𝟙[t>0]·exp(½ log Σ)·z, with x̂₀ = x_t/√ᾱ_t − √(1/ᾱ_t − 1)·ε̂
(eq. 15) optionally clipped to x0_range and μ the posterior mean (eq. 7). Σ is
fixedlarge (β_t) or fixedsmall (β̃_t), or learned_range when eps_fn returns (ε̂, v)
(Improved DDPM eq. 15). With 0 < num_steps < T the chain runs on
``space_timesteps(T, str(num_steps))`` with respaced β_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}}
(Improved DDPM, ``process.respace``); the model still sees the original t = τ_i.
"""

import jax.numpy as jnp
import numpy as np
from flax.core import FrozenDict

from diffusion.core.model_fn import as_prediction
from diffusion.core.processes import VAR_TYPES
from diffusion.options import Option, declare
from diffusion.samplers.chain import CLIP_X0, NUM_STEPS, Plan, f32, levels
from diffusion.samplers.timesteps import space_timesteps

DESCRIPTION = "DDPM's ancestral sampling (Ho et al. 2020, Alg. 2), respaced when shortened"


def make_plan(process, *, num_steps: int = 0, var_type: str = "fixedlarge",
              clip_x0: bool = True) -> Plan:
  """DDPM ancestral rows, last level first: model t, x̂₀ coefficients, posterior mean
  coefficients, log-variances (fixed, and the learned_range end points), noise mask.

  num_steps: levels visited (0 = all T; fewer respace the chain); var_type: the fixed
  reverse variance (learned_range is read from a 2C-output model); clip_x0: clip x̂₀
  to the data range."""
  T = process.num_timesteps
  model_t = np.arange(T)
  if num_steps not in (0, T):
    model_t = space_timesteps(T, str(num_steps))
    process = process.respace(model_t)
  scale, std = process.host_marginal()
  # learned_range takes its variance from the model; the fixed column is then unused.
  fixed_type = "fixedlarge" if var_type == "learned_range" else var_type
  fixed = process.p_log_variance(jnp.arange(process.num_timesteps), fixed_type)
  order = np.arange(process.num_timesteps)[::-1]
  rows = dict(
      model_t=model_t[order].astype(np.int32),
      recip_scale=1.0 / scale[order],                   # x̂₀ = x/√ᾱ − √(1/ᾱ − 1)·ε̂
      eps_to_x0=(std / scale)[order],
      coef_x0=np.asarray(process.posterior_mean_coef1, np.float64)[order],
      coef_xt=np.asarray(process.posterior_mean_coef2, np.float64)[order],
      log_var=np.asarray(fixed, np.float64)[order],
      min_log_var=np.asarray(process.posterior_log_variance_clipped, np.float64)[order],
      max_log_var=np.asarray(process.step_log_variance, np.float64)[order],
      noise=(order > 0).astype(np.float64))              # no noise on the last step
  return Plan({k: (jnp.asarray(v) if v.dtype == np.int32 else f32(v))
               for k, v in rows.items()}, process, step,
              options=FrozenDict(var_type=var_type, clip_x0=bool(clip_x0)))


OPTIONS = declare(
    make_plan, num_steps=NUM_STEPS, clip_x0=CLIP_X0,
    var_type=Option("reverse variance: fixedlarge (VP: beta_t; VE: sigma_t^2 - "
                    "sigma_{t-1}^2, score_sde's reverse diffusion) or fixedsmall (the "
                    "posterior's; VE: score_sde's ancestral sampling); learned_range is "
                    "automatic for 2C-output models", choices=VAR_TYPES))


def step(eps_fn, plan: Plan, x0_range, x, row, z):
  o = plan.options
  eps, v = as_prediction(eps_fn(x, levels(row, x)), o["var_type"], "sampling.var_type")
  x0 = row["recip_scale"] * x - row["eps_to_x0"] * eps            # DDPM eq. 15 for x̂₀
  if o["clip_x0"] and x0_range is not None:
    x0 = jnp.clip(x0, x0_range[0], x0_range[1])
  mean = row["coef_x0"] * x0 + row["coef_xt"] * x                  # posterior mean (eq. 7)
  log_var = row["log_var"]
  if v is not None:                                                # Improved DDPM eq. 15
    frac = (v + 1.0) / 2.0
    log_var = frac * row["max_log_var"] + (1.0 - frac) * row["min_log_var"]
  return mean + row["noise"] * jnp.exp(0.5 * log_var) * z          # DDPM Alg. 2, line 4

"""DDIM (Song, Meng & Ermon 2020): x_s = a_s x̂₀ + c₂·ε̂ + c₁ z along a sub-sequence τ.

c₁ = η·(posterior std of x_s | x_t, x₀), c₂ = √(n_s² − c₁²), a = signal scale,
n = noise std, s the previous element of τ (the data at the end: a = 1, n = 0);
ermongroup/ddim's ``generalized_steps`` for VP, and the same formula for VE.
When x̂₀ is clipped, ε̂ is re-derived from the clipped x̂₀ (Improved DDPM's
``ddim_sample``).
"""

from typing import Dict, Sequence

import jax.numpy as jnp
import numpy as np
from flax.core import FrozenDict

from diffusion.core.model_fn import as_prediction
from diffusion.options import NONNEGATIVE, Option, declare
from diffusion.samplers.chain import CLIP_X0, NUM_STEPS, Plan, f32, levels
from diffusion.samplers.timesteps import ddim_timesteps

DESCRIPTION = "DDIM (Song et al. 2020) with eta, on a uniform or quadratic sub-sequence"
NAMED_BY = ("eta",)   # samples of another eta are other samples (sample.py's folder name)
SKIP_TYPES = ("uniform", "quad")


def ddim_coefficients(process, timesteps: Sequence[int], eta: float) -> Dict[str, np.ndarray]:
  """Per-step DDIM coefficients along τ (ascending), for the step τ_j -> τ_{j−1}.

  Computed in float64 from the process's schedule. Returns a dict of float64 [S]
  arrays (index j = the step leaving τ_j):
    a_t, n_t: signal scale and noise std at τ_j;
    a_s, n_s: the same at τ_{j−1} (a = 1, n = 0 before τ_0);
    c1: noise std η·√(n_s² (n_t² − (a_t/a_s)² n_s²)/n_t²) — for VP and
      consecutive steps with η = 1 this is √β̃_t;
    c2: √(n_s² − c1²), the weight on ε̂.
  """
  scale, std = process.host_marginal()
  tau = np.asarray(timesteps, np.int64)
  a_t, n_t = scale[tau], std[tau]
  a_s = np.append(1.0, a_t[:-1])
  n_s = np.append(0.0, n_t[:-1])
  r = a_t / a_s
  post_var = n_s ** 2 * np.maximum(n_t ** 2 - r ** 2 * n_s ** 2, 0.0) / n_t ** 2
  c1 = float(eta) * np.sqrt(post_var)
  c2 = np.sqrt(np.maximum(n_s ** 2 - c1 ** 2, 0.0))
  return dict(a_t=a_t, n_t=n_t, a_s=a_s, n_s=n_s, c1=c1, c2=c2)


def make_plan(process, *, num_steps: int = 0, skip_type: str = "uniform", eta: float = 0.0,
              clip_x0: bool = True) -> Plan:
  """DDIM rows along τ (S = ``num_steps`` levels, 0 = all), last element first."""
  tau = ddim_timesteps(process.num_timesteps, num_steps, skip_type)
  coefs = ddim_coefficients(process, tau, eta)
  order = np.arange(len(tau))[::-1]
  rows = {k: f32(v[order]) for k, v in coefs.items()}
  rows["model_t"] = jnp.asarray(tau[order].astype(np.int32))
  return Plan(rows, process, step, options=FrozenDict(eta=float(eta), clip_x0=bool(clip_x0)))


OPTIONS = declare(
    make_plan, num_steps=NUM_STEPS, clip_x0=CLIP_X0,
    skip_type=Option("step selection: uniform or quad", choices=SKIP_TYPES),
    eta=Option("noise (0 deterministic, 1 = the DDPM posterior)", rule=NONNEGATIVE))


def step(eps_fn, plan: Plan, x0_range, x, row, z):
  o = plan.options
  eps = as_prediction(eps_fn(x, levels(row, x))).eps
  x0 = (x - row["n_t"] * eps) / row["a_t"]                          # DDIM eq. 12, "predicted x0"
  if o["clip_x0"] and x0_range is not None:
    x0 = jnp.clip(x0, x0_range[0], x0_range[1])
    eps = (x - row["a_t"] * x0) / row["n_t"]                        # ε̂ consistent with clipping
  x = row["a_s"] * x0 + row["c2"] * eps                             # "direction pointing to x_t"
  return x + row["c1"] * z if o["eta"] > 0 else x                  # random noise σ_t z

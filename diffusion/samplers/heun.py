"""EDM's Heun sampler (Karras et al. 2022, Algorithm 1; stochastic Algorithm 2).

Discretisation (EDM eq. 5): for i < N,
  σ_i = (σ_max^{1/ρ} + i/(N−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ,  σ_N = 0,  ρ = 7,
with σ_max, σ_min the process's largest and smallest σ (``sigmas.sigma_table``:
VP σ = √(1/ᾱ − 1), EDM's VP wrapper; VE σ directly). Discrete-time models: every
σ_i (and the churned σ̂_i) is rounded to the *nearest* discrete level σ_j
(EDM's ``round_sigma`` for its iDDPM wrapper, argmin |σ − σ_j|), and the network
sees ε_θ(s_j x̂, j) with x = s_j x̂. The chain runs in x̂; x_T from the process
prior is divided by s_{T−1} on the first step; the output is x̂ at σ_N = 0.

num_steps = N (σ steps; 0 means EDM's 18): N − 1 Heun steps and a final Euler
step to σ = 0, so NFE = 2N − 1. Recommended: N = 18 (35 NFE, EDM's CIFAR-10
setting); N = 10 (19 NFE) is fair on smooth data.

Stochastic (Alg. 2, s_churn > 0): γ_i = min(S_churn/N, √2 − 1) when
σ_i ∈ [S_tmin, S_tmax], else 0; σ̂_i = σ_i(1 + γ_i); noise S_noise·√(σ̂² − σ²).
"""

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from diffusion.errors import ConfigError
from diffusion.options import NONNEGATIVE, POSITIVE, Option, declare
from diffusion.samplers.chain import NUM_STEPS, Plan, f32
from diffusion.samplers.sigmas import eps_at, nearest_level, sigma_table

DESCRIPTION = "EDM's Heun sampler (Karras et al. 2022, Alg. 1; stochastic Alg. 2)"
DEFAULT_STEPS = 18


def edm_sigmas(sigma_min: float, sigma_max: float, n: int, rho: float) -> np.ndarray:
  """EDM eq. 5: N σ's from σ_max to σ_min (float64), then σ_N = 0 appended: [N + 1]."""
  i = np.arange(n, dtype=np.float64)
  inv = 1.0 / rho
  ramp = i / max(n - 1, 1)
  s = (sigma_max ** inv + ramp * (sigma_min ** inv - sigma_max ** inv)) ** rho
  return np.append(s, 0.0)


def check(num_timesteps: int, options: Mapping) -> None:
  """EDM's discretisation needs N >= 2 σ steps."""
  del num_timesteps
  if options["num_steps"] == 1:
    raise ConfigError("sampling.num_steps=1 is not valid for heun; it needs N >= 2 σ steps "
                      "(0 = EDM's 18).")


def heun_coefficients(process, *, num_steps: int, rho: float, s_churn: float, s_tmin: float,
                      s_tmax: float, s_noise: float) -> dict:
  """Per-step float64 rows of Alg. 2 (Alg. 1 when s_churn = 0), index i = step i.

  Returns dict of [N] arrays: t_hat (level of σ̂_i), sigma, sigma_hat, sigma_next
  (σ_{i+1}, 0 on the last), t_next, scale_hat, scale_next (s at those levels),
  noise (S_noise·√(σ̂² − σ²)), second (1 where σ_{i+1} ≠ 0), in_scale (1/s_{T−1}
  on step 0, else 1).
  """
  n = num_steps or DEFAULT_STEPS
  scale, sig = sigma_table(process)
  raw = edm_sigmas(sig[0], sig[-1], n, rho)                          # EDM eq. 5
  lev = nearest_level(sig, raw[:-1])                                 # round_sigma
  sigma = sig[lev]
  gamma = np.where((sigma >= s_tmin) & (sigma <= s_tmax),
                   min(s_churn / n, np.sqrt(2.0) - 1.0), 0.0)         # Alg. 2 line 4
  t_hat = nearest_level(sig, sigma * (1.0 + gamma))                  # σ̂ rounded to a level
  sigma_hat = sig[t_hat]
  t_next = np.append(lev[1:], 0)
  sigma_next = np.append(sigma[1:], 0.0)
  return dict(
      t_hat=t_hat, sigma=sigma, sigma_hat=sigma_hat, sigma_next=sigma_next, t_next=t_next,
      scale_hat=scale[t_hat], scale_next=scale[t_next],
      noise=s_noise * np.sqrt(np.maximum(sigma_hat ** 2 - sigma ** 2, 0.0)),
      second=(sigma_next > 0).astype(np.float64),
      in_scale=np.append(1.0 / scale[-1], np.ones(n - 1)))


def make_plan(process, *, num_steps: int = 0, rho: float = 7.0, s_churn: float = 0.0,
              s_tmin: float = 0.0, s_tmax: float = 1e30, s_noise: float = 1.0) -> Plan:
  """Alg. 2's chain (Alg. 1 when ``s_churn`` = 0) of N = ``num_steps`` σ steps (0 = 18)."""
  c = heun_coefficients(process, num_steps=num_steps, rho=rho, s_churn=s_churn, s_tmin=s_tmin,
                        s_tmax=s_tmax, s_noise=s_noise)
  rows = {k: (jnp.asarray(v.astype(np.int32)) if k.startswith("t_") else f32(v))
          for k, v in c.items()}
  return Plan(rows, process, step)


OPTIONS = declare(
    make_plan, num_steps=NUM_STEPS,
    rho=Option("sigma-step exponent rho (EDM: 7)", rule=POSITIVE),
    s_churn=Option("stochasticity S_churn (0 = deterministic Alg. 1)", rule=NONNEGATIVE),
    s_tmin=Option("churn only where sigma >= S_tmin", rule=NONNEGATIVE),
    s_tmax=Option("churn only where sigma <= S_tmax (1e30 = no limit)", rule=NONNEGATIVE),
    s_noise=Option("churn noise scale S_noise (EDM: 1.0-1.007)", rule=POSITIVE))


def step(eps_fn, plan: Plan, x0_range, x, row, z):
  del x0_range
  x = row["in_scale"] * x                                            # x_T -> x̂ (first step)
  x_hat = x + row["noise"] * z                                       # Alg. 2 line 5: churn noise
  d = eps_at(eps_fn, row["scale_hat"] * x_hat, row["t_hat"])         # line 6: d = (x̂ − D)/σ̂ = ε̂
  h = row["sigma_next"] - row["sigma_hat"]
  x_next = x_hat + h * d                                             # line 7: Euler step

  def correct(x_next):                                               # line 8: if σ_{i+1} ≠ 0
    d2 = eps_at(eps_fn, row["scale_next"] * x_next, row["t_next"])   # line 9: d' at σ_{i+1}
    return x_hat + h * (0.5 * d + 0.5 * d2)                          # line 10: trapezoid
  return jax.lax.cond(row["second"] > 0, correct, lambda v: v, x_next)

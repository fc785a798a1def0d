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

``sigma_policy``: ``round`` is the above (EDM's iDDPM wrapper); ``interpolate`` keeps
every σ_i and σ̂_i as eq. 5 gives it and feeds the network the fractional level
u(σ) (log σ linear between levels; what that means per network: core/model_fn.py),
with s(σ) = 1/√(1 + σ²) (VP) or 1 (VE). Rounding on a coarse ladder (T = 100 cosine,
10 VE levels) lands several σ_i on one level and leaves the chain's discretisation
error wherever N goes; interpolation removes it (tests/samplers/test_heun.py).

``clip_x0`` (with an ``x0_range``): the denoiser's output D = x̂ − σ ε̂ (the x̂₀ of the
step) is clipped to the data range and d = (x̂ − D)/σ recomputed, at both evaluations
of a step — the static thresholding of DPM-Solver++ (Lu et al. 2022b, §3.3) and of
DDPM's x̂₀ clipping, in EDM's coordinates.
"""

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from flax.core import FrozenDict

from diffusion.errors import ConfigError
from diffusion.options import NONNEGATIVE, POSITIVE, Option, Rule, declare
from diffusion.samplers.chain import CLIP_X0, NUM_STEPS, SIGMA_POLICY, Plan, f32, level_rows
from diffusion.samplers.sigmas import eps_at, nearest_level, place, scale_of, sigma_table

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
  """EDM's discretisation needs N >= 2 σ steps; the churn range must not be empty."""
  del num_timesteps
  if options["num_steps"] == 1:
    raise ConfigError("sampling.num_steps=1 is not valid for heun; it needs N >= 2 σ steps "
                      "(0 = EDM's 18).")
  if options["s_churn"] > 0 and options["s_tmin"] > options["s_tmax"]:
    raise ConfigError(f"sampling.s_tmin={options['s_tmin']!r} is not valid; with "
                      f"sampling.s_churn={options['s_churn']!r} it must be <= sampling.s_tmax="
                      f"{options['s_tmax']!r} (EDM Alg. 2 churns where S_tmin <= sigma <= "
                      "S_tmax; an empty range would drop the churn silently).")


def describe(num_timesteps: int, options: Mapping) -> str:
  """The words after "N steps": the network evaluations (N σ steps cost 2N − 1)."""
  del num_timesteps
  return f"{2 * (options['num_steps'] or DEFAULT_STEPS) - 1} network evaluations"


def heun_coefficients(process, *, num_steps: int, rho: float, s_churn: float, s_tmin: float,
                      s_tmax: float, s_noise: float, sigma_policy: str = "round",
                      clip_x0: bool = True) -> dict:
  """Per-step float64 rows of Alg. 2 (Alg. 1 when s_churn = 0), index i = step i.

  Returns dict of [N] arrays: t_hat (level of σ̂_i: int64, or float64 fractional levels
  under ``sigma_policy='interpolate'``), sigma, sigma_hat, sigma_next (σ_{i+1}, 0 on the
  last), t_next, scale_hat, scale_next (s at those σ), noise (S_noise·√(σ̂² − σ²)),
  second (1 where σ_{i+1} ≠ 0), in_scale (1/s_{T−1} on step 0, else 1). ``clip_x0`` is
  applied in the step (unused here).
  """
  del clip_x0
  n = num_steps or DEFAULT_STEPS
  scale, sig = sigma_table(process)
  raw = edm_sigmas(sig[0], sig[-1], n, rho)                          # EDM eq. 5
  if sigma_policy == "round":
    lev = nearest_level(sig, raw[:-1])                               # round_sigma
    sigma = sig[lev]
  else:
    lev, sigma = place(sig, raw[:-1], sigma_policy)
  gamma = np.where((sigma >= s_tmin) & (sigma <= s_tmax),
                   min(s_churn / n, np.sqrt(2.0) - 1.0), 0.0)         # Alg. 2 line 4
  if sigma_policy == "round":
    t_hat = nearest_level(sig, sigma * (1.0 + gamma))                # σ̂ rounded to a level
    sigma_hat = sig[t_hat]
    t_next = np.append(lev[1:], 0)
    scale_hat, scale_next = scale[t_hat], scale[t_next]
  else:
    t_hat, sigma_hat = place(sig, sigma * (1.0 + gamma), sigma_policy)
    t_next = np.append(lev[1:], 0.0)
    scale_hat = scale_of(process.kind, sigma_hat)
    scale_next = scale_of(process.kind, np.append(sigma[1:], sig[0]))
  sigma_next = np.append(sigma[1:], 0.0)
  return dict(
      t_hat=t_hat, sigma=sigma, sigma_hat=sigma_hat, sigma_next=sigma_next, t_next=t_next,
      scale_hat=scale_hat, scale_next=scale_next,
      noise=s_noise * np.sqrt(np.maximum(sigma_hat ** 2 - sigma ** 2, 0.0)),
      second=(sigma_next > 0).astype(np.float64),
      in_scale=np.append(1.0 / scale[-1], np.ones(n - 1)))


def make_plan(process, *, num_steps: int = 0, rho: float = 7.0, s_churn: float = 0.0,
              s_tmin: float = 0.0, s_tmax: float = 1e30, s_noise: float = 1.0,
              sigma_policy: str = "round", clip_x0: bool = True) -> Plan:
  """Alg. 2's chain (Alg. 1 when ``s_churn`` = 0) of N = ``num_steps`` σ steps (0 = 18)."""
  c = heun_coefficients(process, num_steps=num_steps, rho=rho, s_churn=s_churn, s_tmin=s_tmin,
                        s_tmax=s_tmax, s_noise=s_noise, sigma_policy=sigma_policy)
  rows = {k: (level_rows(v) if k.startswith("t_") else f32(v)) for k, v in c.items()}
  return Plan(rows, process, step, options=FrozenDict(clip_x0=bool(clip_x0)))


# EDM's grid searches stayed within S_noise ∈ [1.000, 1.011] (Table 5); above 2 the churn
# adds more noise than the step can take out.
NOISE_SCALE = Rule(lambda v: 0 < v <= 2, "in (0, 2]")
RHO = Option("sigma-step exponent rho of EDM eq. 5 (EDM: 7)", rule=POSITIVE)

OPTIONS = declare(
    make_plan, num_steps=NUM_STEPS, sigma_policy=SIGMA_POLICY, clip_x0=CLIP_X0,
    rho=RHO,
    s_churn=Option("stochasticity S_churn (0 = deterministic Alg. 1)", rule=NONNEGATIVE),
    s_tmin=Option("churn only where sigma >= S_tmin (<= s_tmax)", rule=NONNEGATIVE),
    s_tmax=Option("churn only where sigma <= S_tmax (1e30 = no limit)", rule=NONNEGATIVE),
    s_noise=Option("churn noise scale S_noise (EDM: 1.0-1.007)", rule=NOISE_SCALE))


def _direction(eps_fn, plan: Plan, x0_range, x_hat, sigma, scale, level):
  """d = (x̂ − D)/σ with D = x̂ − σ ε̂ (EDM eq. 4 with s = 1), D clipped to the data range
  when the plan clips (DPM-Solver++'s static thresholding, in x̂)."""
  d = eps_at(eps_fn, scale * x_hat, level)
  if plan.options["clip_x0"] and x0_range is not None:
    denoised = jnp.clip(x_hat - sigma * d, x0_range[0], x0_range[1])
    d = (x_hat - denoised) / sigma
  return d


def step(eps_fn, plan: Plan, x0_range, x, row, z):
  x = row["in_scale"] * x                                            # x_T -> x̂ (first step)
  x_hat = x + row["noise"] * z                                       # Alg. 2 line 5: churn noise
  d = _direction(eps_fn, plan, x0_range, x_hat, row["sigma_hat"], row["scale_hat"],
                 row["t_hat"])                                       # line 6: d = (x̂ − D)/σ̂
  h = row["sigma_next"] - row["sigma_hat"]
  x_next = x_hat + h * d                                             # line 7: Euler step

  def correct(x_next):                                               # line 8: if σ_{i+1} ≠ 0
    d2 = _direction(eps_fn, plan, x0_range, x_next, row["sigma_next"], row["scale_next"],
                    row["t_next"])                                   # line 9: d' at σ_{i+1}
    return x_hat + h * (0.5 * d + 0.5 * d2)                          # line 10: trapezoid
  return jax.lax.cond(row["second"] > 0, correct, lambda v: v, x_next)

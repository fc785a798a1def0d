"""iPNDM: improved pseudo-numerical multistep in σ (Zhang & Chen 2023, "Fast Sampling of
Diffusion Models with Exponential Integrator", §4 / App. "iPNDM"; as benchmarked in
zju-pi/diff-sampler, Zhou et al. 2024).

In EDM's coordinates (``sigmas.py``: x̂ = x/s, σ = n/s) the probability-flow ODE is
dx̂/dσ = ε̂(x̂, σ) (EDM eq. 4). iPNDM steps it with the explicit Adams–Bashforth weights of
a uniform grid, applied on EDM's ρ-grid (eq. 5: σ_i = (σ_max^{1/ρ} + i/M (σ_min^{1/ρ} −
σ_max^{1/ρ}))^ρ, i = 0..M, from the top level's σ to level 0's), d_i = ε̂ at σ_i:

  x̂_{i+1} = x̂_i + (σ_{i+1} − σ_i) Σ_k c_k d_{i−k},  order p = min(ipndm_order, i + 1):
    p = 1: c = (1)                     p = 2: c = (3, −1)/2
    p = 3: c = (23, −16, 5)/12          p = 4: c = (55, −59, 37, −9)/24
(AB weights ∫_0^1 ℓ_k(τ) dτ of the Lagrange basis on the nodes 0, −1, −2, −3; the
"improved" PNDM: linear multistep started with lower orders instead of PNDM's Runge–Kutta
warm-up, and no lower order at the end, as diff-sampler's ``ipndm_sampler``). In the
model's space x = s x̂ one step reads x_{i+1} = (s_{i+1}/s_i) x_i + s_{i+1}(σ_{i+1} − σ_i)
Σ_k c_k d_{i−k} (the DDIM coefficient times the AB weights, DEIS's ``get_ipndm_coef``).

``sigma_policy``: ``round`` puts every σ_i on the nearest level (merged levels dropped,
then NFE < M), ``interpolate`` keeps them, with fractional levels. ``clip_x0``: each
d_i = (x̂ − D)/σ with D = x̂ − σ ε̂ clipped to the data range.

num_steps = M = NFE (0 means 10; + 1 with ``denoise``); the output is x at level 0.
ipndm_order ≤ M. Recommended: 5–10 NFE (diff-sampler's CIFAR-10 table: iPNDM is the
strongest training-free multistep at 5–10 NFE).
"""

from typing import Mapping

import numpy as np

from diffusion.errors import ConfigError
from diffusion.options import Option, declare
from diffusion.samplers import multistep
from diffusion.samplers.chain import CLIP_X0, DENOISE, NUM_STEPS, SIGMA_POLICY, Plan
from diffusion.samplers.heun import RHO, edm_sigmas
from diffusion.samplers.sigmas import place, scale_of, sigma_table

DESCRIPTION = ("iPNDM (Zhang & Chen 2023): 4th-order Adams-Bashforth in sigma on EDM's rho "
               "grid, lower orders first")
DEFAULT_STEPS = 10
ORDERS = (1, 2, 3, 4)
# Adams–Bashforth weights on a uniform grid, newest first (order p: row p − 1).
AB_WEIGHTS = (np.array([1.0]), np.array([3.0, -1.0]) / 2.0,
              np.array([23.0, -16.0, 5.0]) / 12.0, np.array([55.0, -59.0, 37.0, -9.0]) / 24.0)


def check(num_timesteps: int, options: Mapping) -> None:
  """Four steps at least for order four (or a lower ``ipndm_order``)."""
  del num_timesteps
  n, order = options["num_steps"], options["ipndm_order"]
  if 0 < n < order:
    raise ConfigError(f"sampling.num_steps={n} is not valid for ipndm with "
                      f"sampling.ipndm_order={order}; it must be >= {order}, or 0 for 10 "
                      "(or lower sampling.ipndm_order).")


def describe(num_timesteps: int, options: Mapping) -> str:
  """The words after "N steps": the network evaluations."""
  del num_timesteps
  return f"{multistep.network_evaluations(options, DEFAULT_STEPS)} network evaluations"


def ipndm_rows(process, *, num_steps: int, rho: float = 7.0, ipndm_order: int = 4,
               sigma_policy: str = "round") -> dict:
  """float64 rows, index i for the step σ_i -> σ_{i+1}: model_t (the level of σ_i), alpha,
  sigma (the level's signal scale s_i and noise std s_i σ_i), a = s_{i+1}/s_i, b0..b3
  (s_{i+1}(σ_{i+1} − σ_i) c_k), order; and levels, alpha_all, sigma_all of every point."""
  m = num_steps or DEFAULT_STEPS
  scale, sig = sigma_table(process)
  raw = edm_sigmas(sig[0], sig[-1], m + 1, rho)[:-1]                 # EDM eq. 5, M + 1 points
  lev, s = place(sig, raw, sigma_policy)
  if sigma_policy == "round":
    keep = np.append(True, np.diff(lev) < 0)                         # drop merged levels
    lev, s = lev[keep], s[keep]
    a_s = scale[lev]
  else:
    a_s = scale_of(process.kind, s)
  n = len(lev) - 1
  orders = np.minimum(ipndm_order, np.arange(1, n + 1))
  b = np.zeros((n, 4))
  for i in range(n):
    w = AB_WEIGHTS[orders[i] - 1]
    b[i, :len(w)] = a_s[i + 1] * (s[i + 1] - s[i]) * w
  return dict(model_t=lev[:-1], alpha=a_s[:-1], sigma=(a_s * s)[:-1], a=a_s[1:] / a_s[:-1],
              b0=b[:, 0], b1=b[:, 1], b2=b[:, 2], b3=b[:, 3], order=orders.astype(float),
              levels=lev, alpha_all=a_s, sigma_all=a_s * s)


def make_plan(process, *, num_steps: int = 0, rho: float = 7.0, ipndm_order: int = 4,
              sigma_policy: str = "round", denoise: bool = False,
              clip_x0: bool = True) -> Plan:
  """The iPNDM chain of M = ``num_steps`` steps (0 = 10)."""
  r = ipndm_rows(process, num_steps=num_steps, rho=rho, ipndm_order=ipndm_order,
                 sigma_policy=sigma_policy)
  final = multistep.final_point(r["levels"], r["alpha_all"], r["sigma_all"]) if denoise \
      else None
  return multistep.make_plan(process, r, predict="eps", clip_x0=clip_x0, final=final)


OPTIONS = declare(
    make_plan, num_steps=NUM_STEPS, rho=RHO, sigma_policy=SIGMA_POLICY, denoise=DENOISE,
    clip_x0=CLIP_X0,
    ipndm_order=Option("highest Adams-Bashforth order (diff-sampler: 4)", choices=ORDERS))

"""DEIS (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential
Integrator"): tAB-DEIS, Adams–Bashforth in time on the exponential integrator.

With α, σ the signal scale and noise std and ρ = σ/α (EDM's σ), the probability-flow
ODE is d(x/α) = ε̂ dρ (DEIS eq. 9–11 for VP; the same for VE with α = 1), so one step
from t_i to t_{i+1} is exactly
  x_{t_{i+1}} = (α_{i+1}/α_i) x_{t_i} + α_{i+1} ∫_{t_i}^{t_{i+1}} ε̂(τ) dρ(τ),
and tAB-DEIS (eq. 13–14) replaces ε̂(τ) by the Lagrange polynomial in t through the
last p evaluations ε̂_i, ε̂_{i−1}, …, ε̂_{i−p+1}:
  C_{ij} = α_{i+1} ∫_{t_i}^{t_{i+1}} ℓ_j(τ) dρ(τ),  ℓ_j(τ) = Π_{k≠j} (τ − t_{i−k})/(t_{i−j} − t_{i−k}),
  x_{t_{i+1}} = (α_{i+1}/α_i) x_{t_i} + Σ_j C_{ij} ε̂_{i−j},   p = min(deis_order, i + 1).
Time here is the level: t ∈ [0, T − 1], with ρ(t) continued between levels log-linearly
(the σ policy's continuation, ``Process.level_marginal``); the integrals are computed in
float64 with 8-point Gauss–Legendre on every level interval (ρ is smooth there). DEIS's
own code continues a discrete schedule by ᾱ linear in t instead; the two agree at the
levels and differ by O(Δt²) between them.

Time points (``deis_skip``): DEIS's quadratic time by default (``time_quadratic``,
t_i = (√(T−1)(1 − i/M))², its ts_order = 2 for discrete models), or any of the solvers'
grids (``timesteps.solver_grid``); ``sigma_policy`` as there.

``deis_basis``: ``t`` (tAB, the paper's) or ``log_rho``: the polynomial in log ρ, which
has closed-form weights (diffusers' DEISMultistepScheduler, "log-rho multistep DEIS",
with its lower_order_final: below 15 steps the last steps drop to orders 1 and 2). On a
geometric VE ladder log ρ is linear in t and the two bases are one.

``clip_x0``: ε̂ is recomputed from the clipped x_θ = (x − σ ε̂)/α. num_steps = M = NFE
(0 means 10; + 1 with ``denoise``); the output is x at level 0. deis_order ≤ M.
Recommended: tAB3, 10 NFE (the paper's CIFAR-10 setting).

Comparing with diffusers on identical inputs: DEISMultistepScheduler(solver_order=3,
algorithm_type="deis", solver_type="logrho", lower_order_final=True,
timestep_spacing="linspace", thresholding=False) steps through
round(linspace(T − 1, 0, M + 1)): ``deis_basis=log_rho``, ``deis_skip=time_uniform``,
``sigma_policy=round``, ``clip_x0=False``.
"""

from typing import Mapping

import numpy as np

from diffusion.errors import ConfigError
from diffusion.options import Option, declare
from diffusion.samplers import multistep
from diffusion.samplers.chain import CLIP_X0, DENOISE, NUM_STEPS, SIGMA_POLICY, Plan
from diffusion.samplers.sigmas import sigma_table
from diffusion.samplers.timesteps import SOLVER_SKIPS, solver_grid

DESCRIPTION = ("DEIS (Zhang & Chen 2023): tAB3, Adams-Bashforth in time on the exponential "
               "integrator")
DEFAULT_STEPS = 10
ORDERS = (1, 2, 3)
BASES = ("t", "log_rho")
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(8)


def check(num_timesteps: int, options: Mapping) -> None:
  """ρ needs two levels; an order needs as many steps."""
  if num_timesteps < 2:
    raise ConfigError("sampling.method='deis' needs diffusion.num_timesteps >= 2.")
  n, order = options["num_steps"], options["deis_order"]
  if 0 < n < order:
    raise ConfigError(f"sampling.num_steps={n} is not valid for deis with "
                      f"sampling.deis_order={order}; it must be >= {order}, or 0 for 10.")


def describe(num_timesteps: int, options: Mapping) -> str:
  """The words after "N steps": the network evaluations."""
  del num_timesteps
  return f"{multistep.network_evaluations(options, DEFAULT_STEPS)} network evaluations"


def _lagrange(x: np.ndarray, nodes: np.ndarray, j: int) -> np.ndarray:
  """ℓ_j(x) of the Lagrange basis on ``nodes`` (float64)."""
  out = np.ones_like(x)
  for k, node in enumerate(nodes):
    if k != j:
      out = out * (x - node) / (nodes[j] - node)
  return out


def rho_integrals(log_rho: np.ndarray, start: float, stop: float, nodes: np.ndarray,
                  basis: str) -> np.ndarray:
  """∫_{start}^{stop} ℓ_j dρ for each j (float64 [len(nodes)]), ρ(t) = exp of log ρ
  linear between the levels' ``log_rho`` [T]; ℓ_j on ``nodes`` in t, or in log ρ."""
  lo, hi = min(start, stop), max(start, stop)
  cuts = np.concatenate([[lo], np.arange(np.floor(lo) + 1, np.ceil(hi)), [hi]])
  total = np.zeros(len(nodes))
  for a, b in zip(cuts[:-1], cuts[1:]):
    if b <= a:
      continue
    k = min(int(np.floor(a)), len(log_rho) - 2)
    slope = log_rho[k + 1] - log_rho[k]
    t = 0.5 * (b - a) * _GL_NODES + 0.5 * (a + b)
    lr = log_rho[k] + (t - k) * slope
    drho = np.exp(lr) * slope * 0.5 * (b - a) * _GL_WEIGHTS           # dρ at the GL nodes
    x = t if basis == "t" else lr
    total += [np.sum(_lagrange(x, nodes, j) * drho) for j in range(len(nodes))]
  return total if stop >= start else -total


def deis_rows(process, *, num_steps: int, deis_order: int = 3, deis_skip: str = "time_quadratic",
              deis_basis: str = "t", sigma_policy: str = "round") -> dict:
  """float64 rows, index i for the step t_i -> t_{i+1}: model_t, alpha, sigma (at t_i),
  a = α_{i+1}/α_i, b0..b2 (C_{i0}, C_{i1}, C_{i2}: on ε̂_i, ε̂_{i−1}, ε̂_{i−2}), order; and
  the grid (levels, alpha_all, sigma_all)."""
  ts, alpha, sigma = solver_grid(process, num_steps or DEFAULT_STEPS, deis_skip, sigma_policy)
  _, edm = sigma_table(process)
  log_rho = np.log(edm)
  m = len(ts) - 1
  u = np.asarray(ts, np.float64)
  orders = np.minimum(deis_order, np.arange(1, m + 1))
  if deis_basis == "log_rho" and m < 15:                            # diffusers' lower_order_final
    orders = np.minimum(orders, m - np.arange(m))
  log_rho_at = np.interp(u, np.arange(len(edm), dtype=np.float64), log_rho)
  b = np.zeros((m, 3))
  for i in range(m):
    back = np.arange(orders[i])                                      # t_i, t_{i−1}, ...
    nodes = u[i - back] if deis_basis == "t" else log_rho_at[i - back]
    b[i, :orders[i]] = alpha[i + 1] * rho_integrals(log_rho, u[i], u[i + 1], nodes,
                                                    deis_basis)
  return dict(model_t=ts[:-1], alpha=alpha[:-1], sigma=sigma[:-1], a=alpha[1:] / alpha[:-1],
              b0=b[:, 0], b1=b[:, 1], b2=b[:, 2], order=orders.astype(float), levels=ts,
              alpha_all=alpha, sigma_all=sigma)


def make_plan(process, *, num_steps: int = 0, deis_order: int = 3,
              deis_skip: str = "time_quadratic", deis_basis: str = "t",
              sigma_policy: str = "round", denoise: bool = False, clip_x0: bool = True) -> Plan:
  """The DEIS chain of M = ``num_steps`` steps (0 = 10)."""
  r = deis_rows(process, num_steps=num_steps, deis_order=deis_order, deis_skip=deis_skip,
                deis_basis=deis_basis, sigma_policy=sigma_policy)
  final = multistep.final_point(r["levels"], r["alpha_all"], r["sigma_all"]) if denoise \
      else None
  return multistep.make_plan(process, r, predict="eps", clip_x0=clip_x0, final=final)


OPTIONS = declare(
    make_plan, num_steps=NUM_STEPS, sigma_policy=SIGMA_POLICY, denoise=DENOISE,
    clip_x0=CLIP_X0,
    deis_order=Option("Adams-Bashforth order (paper: 3, tAB3)", choices=ORDERS),
    deis_skip=Option("time steps: time_quadratic (DEIS), time_uniform or logsnr",
                     choices=SOLVER_SKIPS),
    deis_basis=Option("the polynomial's variable: t (tAB, the paper) or log_rho (diffusers' "
                      "DEISMultistepScheduler)", choices=BASES))

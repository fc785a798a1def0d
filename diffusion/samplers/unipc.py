"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast
Sampling of Diffusion Models"): multistep UniP-p with the corrector UniC, data prediction.

On the solvers' time points t_0 = T−1 > ... > t_M = 0 (``dpm_skip``, ``sigma_policy``:
``timesteps.solver_grid``, as DPM-Solver++), with λ = log α − log σ, m_k = x_θ(t_k)
(clipped when ``clip_x0``), h = λ_{t_i} − λ_{t_{i−1}}, hh = −h (data prediction) and
B(h) = e^{hh} − 1 (``bh2``, the default here and in diffusers) or hh (``bh1``):

  UniP-p (Alg. 2 / eq. 11), the step t_{i−1} -> t_i with order p:
    r_k = (λ_{t_{i−1−k}} − λ_{t_{i−1}})/h,  D_k = (m_{i−1−k} − m_{i−1})/r_k,  k = 1..p−1
    x̃_{t_i} = (σ_{t_i}/σ_{t_{i−1}}) x_{t_{i−1}} − α_{t_i} (e^{hh} − 1) m_{i−1}
              − α_{t_i} B(h) Σ_k ρ^p_k D_k
  UniC-p (eq. 12) once m_i = x_θ(x̃_{t_i}, t_i) is known (no extra evaluation: the next
  step reuses it):
    x_{t_i} = (σ_{t_i}/σ_{t_{i−1}}) x_{t_{i−1}} − α_{t_i} (e^{hh} − 1) m_{i−1}
              − α_{t_i} B(h) (Σ_k ρ^c_k D_k + ρ^c_p (m_i − m_{i−1}))
  with ρ solving the order conditions (Theorem 3.1) R ρ = g, R_{jk} = r_k^{j−1} (r_p = 1),
  g_j = j!·hh φ_{j+1}(hh)/B(h), φ_j(z) = ∫_0^1 e^{(1−τ)z} τ^{j−1}/(j−1)! dτ: ρ^p from the
  first p − 1 conditions (p = 2: ρ^p = 1/2, the paper's simplification), ρ^c from all p
  (p = 1: ρ^c = 1/2).
Orders: step i uses min(order, i) (warm-up with lower orders, corrector on) and, as the
official code's ``lower_order_final`` (no step threshold), at most M + 1 − i; no
corrector after the last step (its model value is never needed).

num_steps = M = NFE (0 means 10; + 1 with ``denoise``); the output is x at level 0.
unipc_order ≤ M. Recommended 5–10 NFE (paper: UniPC-3 with bh2 leads DPM-Solver++ at
5–10 NFE on CIFAR-10).

Comparing with diffusers on identical inputs: UniPCMultistepScheduler(solver_order=3,
solver_type="bh2", predict_x0=True, lower_order_final=True, disable_corrector=[],
timestep_spacing="linspace", final_sigmas_type="sigma_min", thresholding=False) steps
through round(linspace(T − 1, 0, M + 1)): ``dpm_skip=time_uniform``,
``sigma_policy=round``, ``clip_x0=False``.
"""

import math
from typing import Mapping

import jax.numpy as jnp
import numpy as np
from flax.core import FrozenDict

from diffusion.errors import ConfigError
from diffusion.options import Option, declare
from diffusion.samplers import multistep
from diffusion.samplers.chain import (CLIP_X0, DENOISE, NUM_STEPS, SIGMA_POLICY, Plan, f32,
                                      level_rows)
from diffusion.samplers.dpm_solver import DPM_SKIP
from diffusion.samplers.sigmas import data_prediction
from diffusion.samplers.timesteps import solver_grid

DESCRIPTION = ("UniPC (Zhao et al. 2023): predictor-corrector multistep, order 3, B(h) = "
               "bh2, data prediction")
DEFAULT_STEPS = 10
ORDERS = (1, 2, 3)
VARIANTS = ("bh1", "bh2")


def check(num_timesteps: int, options: Mapping) -> None:
  """λ needs two levels; an order needs as many steps."""
  if num_timesteps < 2:
    raise ConfigError("sampling.method='unipc' needs diffusion.num_timesteps >= 2.")
  n, order = options["num_steps"], options["unipc_order"]
  if 0 < n < order:
    raise ConfigError(f"sampling.num_steps={n} is not valid for unipc with "
                      f"sampling.unipc_order={order}; it must be >= {order}, or 0 for 10.")


def describe(num_timesteps: int, options: Mapping) -> str:
  """The words after "N steps": the network evaluations."""
  del num_timesteps
  return f"{multistep.network_evaluations(options, DEFAULT_STEPS)} network evaluations"


def step_orders(m: int, order: int) -> np.ndarray:
  """The order of steps 1..M: min(order, i, M + 1 − i)."""
  i = np.arange(1, m + 1)
  return np.minimum(np.minimum(order, i), m + 1 - i)


def rho_weights(h: float, rks: np.ndarray, order: int, b_kind: str):
  """(ρ^p, ρ^c, B(h)) of one step of order p = ``order`` (module doc); ``rks`` [p − 1]."""
  hh = -h
  b_h = hh if b_kind == "bh1" else math.expm1(hh)
  r = np.append(rks, 1.0)
  rows, g = [], []
  h_phi_k, factorial = math.expm1(hh) / hh - 1.0, 1.0                # hh φ_2(hh)
  for j in range(1, order + 1):
    rows.append(r ** (j - 1))
    g.append(h_phi_k * factorial / b_h)                              # j! hh φ_{j+1}(hh)/B(h)
    factorial *= j + 1
    h_phi_k = h_phi_k / hh - 1.0 / factorial
  big_r, g = np.array(rows), np.array(g)
  if order == 1:
    rho_p = np.zeros(0)
  elif order == 2:
    rho_p = np.array([0.5])
  else:
    rho_p = np.linalg.solve(big_r[:-1, :-1], g[:-1])
  rho_c = np.array([0.5]) if order == 1 else np.linalg.solve(big_r, g)
  return rho_p, rho_c, b_h


def unipc_rows(process, *, num_steps: int, unipc_order: int = 3, unipc_variant: str = "bh2",
               dpm_skip: str = "logsnr", sigma_policy: str = "round") -> dict:
  """float64 rows of the scan, index i − 1 for step i (t_{i−1} -> t_i), i = 1..M.

  Step i first corrects the previous step's result with m_{i−1} (x = cp x̃ + cx x_start +
  cn m_{i−1} + c1 m_{i−2} + c2 m_{i−3} + c3 m_{i−4}; cp = 1 and the rest 0 when there is
  nothing to correct), then predicts x̃_{t_i} = a x + p0 m_{i−1} + p1 m_{i−2} + p2 m_{i−3}.
  Also model_t, alpha, sigma (the point t_{i−1}), order, and the grid (levels, alpha_all,
  sigma_all).
  """
  ts, alpha, sigma = solver_grid(process, num_steps or DEFAULT_STEPS, dpm_skip, sigma_policy)
  m = len(ts) - 1
  lam = np.log(alpha) - np.log(sigma)
  orders = step_orders(m, unipc_order)
  pred = np.zeros((m, 4))                                            # a, p0, p1, p2
  corr = np.zeros((m + 1, 6))                                        # cx, cn, c1, c2, c3 (+cp)
  corr[:, 5] = 1.0
  for i in range(1, m + 1):
    p, h = orders[i - 1], lam[i] - lam[i - 1]
    rks = np.array([(lam[i - 1 - k] - lam[i - 1]) / h for k in range(1, p)])
    rho_p, rho_c, b_h = rho_weights(h, rks, p, unipc_variant)
    at, ratio, phi = alpha[i], sigma[i] / sigma[i - 1], math.expm1(-h)
    pred[i - 1, 0] = ratio
    pred[i - 1, 1] = -at * phi + at * b_h * np.sum(rho_p / rks) if p > 1 else -at * phi
    for k in range(1, p):                                            # D_k's m_{i−1−k} term
      pred[i - 1, 1 + k] = -at * b_h * rho_p[k - 1] / rks[k - 1]
    if i == m:
      continue                                                       # no corrector at the end
    c = corr[i]                                                      # applied in row i + 1
    c[5] = 0.0
    c[0] = ratio                                                     # x_start = x_{t_{i−1}}
    c[1] = -at * b_h * rho_c[-1]                                     # m_i (the new value)
    c[2] = -at * phi + at * b_h * (np.sum(rho_c[:-1] / rks) + rho_c[-1])   # m_{i−1}
    for k in range(1, p):                                            # m_{i−1−k}
      c[2 + k] = -at * b_h * rho_c[k - 1] / rks[k - 1]
  corr = corr[:m]
  return dict(model_t=ts[:-1], alpha=alpha[:-1], sigma=sigma[:-1],
              cx=corr[:, 0], cn=corr[:, 1], c1=corr[:, 2], c2=corr[:, 3], c3=corr[:, 4],
              cp=corr[:, 5], a=pred[:, 0], p0=pred[:, 1], p1=pred[:, 2], p2=pred[:, 3],
              order=orders.astype(float), levels=ts, alpha_all=alpha, sigma_all=sigma)


def no_history(x):
  """The memory at x_T: no step to correct, no earlier predictions (zeros, weighted 0)."""
  return (jnp.zeros_like(x),) * 4


def make_plan(process, *, num_steps: int = 0, unipc_order: int = 3, unipc_variant: str = "bh2",
              dpm_skip: str = "logsnr", sigma_policy: str = "round", denoise: bool = False,
              clip_x0: bool = True) -> Plan:
  """The UniPC chain of M = ``num_steps`` steps (0 = 10)."""
  r = unipc_rows(process, num_steps=num_steps, unipc_order=unipc_order,
                 unipc_variant=unipc_variant, dpm_skip=dpm_skip, sigma_policy=sigma_policy)
  rows = {k: f32(r[k]) for k in ("alpha", "sigma", "cx", "cn", "c1", "c2", "c3", "cp", "a",
                                 "p0", "p1", "p2")}
  rows["model_t"] = level_rows(r["model_t"])
  final = multistep.final_point(r["levels"], r["alpha_all"], r["sigma_all"]) if denoise \
      else None
  return Plan(rows, process, step, multistep.denoise_step if denoise else None,
              options=FrozenDict(clip_x0=bool(clip_x0), final=final), memory=no_history)


OPTIONS = declare(
    make_plan, num_steps=NUM_STEPS, dpm_skip=DPM_SKIP,
    sigma_policy=SIGMA_POLICY, denoise=DENOISE, clip_x0=CLIP_X0,
    unipc_order=Option("UniPC order p (paper: 3 for unconditional sampling)", choices=ORDERS),
    unipc_variant=Option("B(h): bh2 = e^h - 1 (default) or bh1 = h", choices=VARIANTS))


def step(eps_fn, plan: Plan, x0_range, state, row, z):
  del z
  x, (x_start, m1, m2, m3) = state
  clip = x0_range if plan.options["clip_x0"] else None
  m0 = data_prediction(eps_fn, x, row["model_t"], row["alpha"], row["sigma"], clip)
  x = (row["cp"] * x + row["cx"] * x_start + row["cn"] * m0 + row["c1"] * m1
       + row["c2"] * m2 + row["c3"] * m3)                            # UniC (eq. 12)
  x_next = row["a"] * x + row["p0"] * m0 + row["p1"] * m1 + row["p2"] * m2   # UniP (eq. 11)
  return x_next, (x, m0, m1, m2)

"""DPM-Solver++ (Lu et al. 2022b): multistep 2M (Algorithm 2) and 3M, and SDE-DPM-Solver++(2M).

Data-prediction form on the process's own schedule: α_t = √ᾱ_t (VP) or 1 (VE), σ_t the
noise std, λ_t = log α_t − log σ_t, x_θ = (x − σ_t ε̂)/α_t (eq. 8). Time points
(``dpm_skip``, ``sigma_policy``: ``timesteps.solver_grid``): M + 1 points t_0 = T−1 > ...
> t_M = 0, λ-uniform by default (DPM-Solver's 'logSNR', its choice for low-resolution
data); ``round`` puts them on the nearest levels (the network sees only its levels;
merged levels are dropped, then NFE < M), ``interpolate`` keeps them where they fall
(fractional levels, log σ linear between levels).

With h_i = λ_{t_i} − λ_{t_{i−1}}, r_i = h_{i−1}/h_i, m_k = x_θ(t_k) and the step
x_{t_i} = (σ_{t_i}/σ_{t_{i−1}}) x_{t_{i−1}} + Σ_k b_k m_{i−1−k}:
  order 1 (DDIM):  b_0 = −α_{t_i} (e^{−h_i} − 1)                               (eq. 9, k = 1)
  2M (Alg. 2):     D = (1 + 1/(2r_i)) m_{i−1} − 1/(2r_i) m_{i−2},  x = … − α(e^{−h} − 1) D
  3M (the official code's third-order multistep update, also diffusers'
      DPMSolverMultistepScheduler with solver_order=3): with r0 = h_{i−1}/h_i,
      r1 = h_{i−2}/h_i, D1_0 = (m_{i−1} − m_{i−2})/r0, D1_1 = (m_{i−2} − m_{i−3})/r1,
      D1 = D1_0 + r0/(r0 + r1)(D1_0 − D1_1), D2 = (D1_0 − D1_1)/(r0 + r1),
      φ1 = e^{−h} − 1, φ2 = φ1/h + 1, φ3 = φ2/h − 1/2:
      x = (σ_t/σ_s) x − α_t φ1 m_{i−1} + α_t φ2 D1 − α_t φ3 D2.
      D1 = h x_θ'(λ) and D2 = h² x_θ''/2 of the quadratic through the last three
      predictions; exact integration of that quadratic would weigh D2 by 2φ3 (checked in
      tests/samplers/test_dpm_solver.py): as published, the update is exact for x_θ linear
      in λ and carries an O(h³ x_θ'') local error otherwise. Kept as published, so that
      this code and diffusers agree on identical inputs.
  SDE (``dpm_sde``, SDE-DPM-Solver++(2M): the data-prediction exponential integrator of
      the reverse SDE, as diffusers' ``sde-dpmsolver++`` with its default midpoint
      solver_type and k-diffusion's ``sample_dpmpp_2m_sde``): the step
      x = (σ_t/σ_s) e^{−h} x + α_t (1 − e^{−2h}) (m_{i−1} + (m_{i−1} − m_{i−2})/(2r))
      + σ_t √(1 − e^{−2h}) z  (first order: without the difference term).
Warm-up: step i uses order min(dpm_order, i). Lower order at the end (DPM-Solver's code,
``lower_order_final``): when M < 10 step i uses at most order M + 1 − i (the last step
first order, the one before at most second). diffusers lowers the order when M < 15.

The output is x at level 0 (σ_0 = 0.01 for DDPM's linear schedule); with ``denoise``
one more evaluation returns x_θ(t_M) (DPM-Solver's ``denoise_to_zero``). ``clip_x0``
(with an ``x0_range``): every x_θ is clipped to the data range before it enters the
update (DPM-Solver++'s static thresholding, §3.3).

num_steps = M = NFE (0 means 20; + 1 with denoise). Recommended 10–20 (paper: 10 for
good, 20 for converged samples on CIFAR-10).

Comparing with diffusers on identical inputs: DPMSolverMultistepScheduler(
algorithm_type="dpmsolver++" (or "sde-dpmsolver++"), solver_order=2|3,
solver_type="midpoint", timestep_spacing="linspace", lower_order_final=True,
final_sigmas_type="sigma_min", thresholding=False) steps through
round(linspace(T − 1, 0, M + 1)), i.e. ``dpm_skip=time_uniform`` with
``sigma_policy=round`` and ``clip_x0=False``, and agrees step for step when M ≥ 15 or
M < 10 (between, diffusers lowers the last orders and this code does not).
"""

from typing import Mapping

import numpy as np

from diffusion.errors import ConfigError
from diffusion.options import Option, declare
from diffusion.samplers import multistep
from diffusion.samplers.chain import CLIP_X0, DENOISE, NUM_STEPS, SIGMA_POLICY, Plan
from diffusion.samplers.timesteps import SOLVER_SKIPS, solver_grid

DESCRIPTION = ("DPM-Solver++ (Lu et al. 2022): multistep 2M (Alg. 2) / 3M, or SDE-DPM-Solver++"
               "(2M)")
DEFAULT_STEPS = 20
SKIPS = SOLVER_SKIPS
ORDERS = (2, 3)


def check(num_timesteps: int, options: Mapping) -> None:
  """λ needs two levels; an order needs as many steps; the SDE form is second order."""
  if num_timesteps < 2:
    raise ConfigError("sampling.method='dpm_solver' needs diffusion.num_timesteps >= 2.")
  order, n = options["dpm_order"], options["num_steps"]
  if 0 < n < order:
    raise ConfigError(f"sampling.num_steps={n} is not valid for dpm_solver with "
                      f"sampling.dpm_order={order}; it must be >= {order} (the multistep "
                      "method needs that many steps), or 0 for 20.")
  if options["dpm_sde"] and order != 2:
    raise ConfigError(f"sampling.dpm_order={order} is not valid with sampling.dpm_sde=True; "
                      "SDE-DPM-Solver++ is second order (dpm_order=2).")


def describe(num_timesteps: int, options: Mapping) -> str:
  """The words after "N steps": which DPM-Solver++ and its network evaluations."""
  del num_timesteps
  n = multistep.network_evaluations(options, DEFAULT_STEPS)
  kind = "SDE-DPM-Solver++(2M)" if options["dpm_sde"] else \
      f"DPM-Solver++({options['dpm_order']}M)"
  return f"{kind}, {n} network evaluations"


def step_orders(m: int, order: int) -> np.ndarray:
  """The order of steps 1..M: warm-up min(order, i); below 10 steps at most M + 1 − i."""
  i = np.arange(1, m + 1)
  orders = np.minimum(order, i)
  if m < 10:                                                         # lower_order_final
    orders = np.minimum(orders, m + 1 - i)
  return orders


def multistep_rows(process, *, num_steps: int, dpm_skip: str = "logsnr", dpm_order: int = 2,
                   dpm_sde: bool = False, sigma_policy: str = "round") -> dict:
  """float64 rows of the chain, index i − 1 for the step t_{i−1} -> t_i (i = 1..M).

  Returns dict of [M] arrays: model_t (level t_{i−1}), alpha_prev, sigma_prev (α, σ
  there), a (the coefficient on x), b0, b1, b2 (on m_{i−1}, m_{i−2}, m_{i−3}), g (the
  noise std; 0 for the ODE), order; and alpha_out, sigma_out, t_out at t_i.
  """
  ts, alpha, sigma = solver_grid(process, num_steps or DEFAULT_STEPS, dpm_skip, sigma_policy)
  m = len(ts) - 1
  lam = np.log(alpha) - np.log(sigma)
  h = np.diff(lam)                                                   # h_i, i = 1..M
  orders = step_orders(m, dpm_order)
  a, b, g = np.zeros(m), np.zeros((m, 3)), np.zeros(m)
  for k in range(m):                                                 # the step t_k -> t_{k+1}
    hk, at, st, ss = h[k], alpha[k + 1], sigma[k + 1], sigma[k]
    if dpm_sde:                                                      # SDE-DPM-Solver++(2M)
      a[k] = st / ss * np.exp(-hk)
      c = -at * np.expm1(-2.0 * hk)                                  # α_t (1 − e^{−2h})
      g[k] = st * np.sqrt(-np.expm1(-2.0 * hk))
      b[k, 0] = c
      if orders[k] == 2:                                             # midpoint: + c/2 D1
        r = h[k - 1] / hk
        b[k, :2] += 0.5 * c / r * np.array([1.0, -1.0])
      continue
    a[k] = st / ss
    phi1 = np.expm1(-hk)
    b[k, 0] = -at * phi1                                             # first order (DDIM)
    if orders[k] == 2:                                               # Alg. 2
      r = h[k - 1] / hk
      b[k, :2] = -at * phi1 * np.array([1.0 + 0.5 / r, -0.5 / r])
    elif orders[k] == 3:                                             # 3M, expanded in m_j
      r0, r1 = h[k - 1] / hk, h[k - 2] / hk
      phi2 = phi1 / hk + 1.0
      phi3 = phi2 / hk - 0.5
      d10 = np.array([1.0, -1.0, 0.0]) / r0                          # D1_0 in (m0, m1, m2)
      d11 = np.array([0.0, 1.0, -1.0]) / r1                          # D1_1
      d1 = d10 + r0 / (r0 + r1) * (d10 - d11)
      d2 = (d10 - d11) / (r0 + r1)
      b[k] = -at * phi1 * np.array([1.0, 0.0, 0.0]) + at * phi2 * d1 - at * phi3 * d2
  return dict(model_t=ts[:-1], alpha_prev=alpha[:-1], sigma_prev=sigma[:-1], a=a,
              b0=b[:, 0], b1=b[:, 1], b2=b[:, 2], g=g, order=orders.astype(np.float64),
              t_out=ts[1:], alpha_out=alpha[1:], sigma_out=sigma[1:])


def dpm_coefficients(process, num_steps: int, skip: str = "logsnr") -> dict:
  """Algorithm 2's rows (2M, rounded levels) in its own terms, index i − 1 for the step
  t_{i−1} -> t_i: t_prev, alpha_prev, sigma_prev, ratio = σ_{t_i}/σ_{t_{i−1}},
  phi = −α_{t_i}(e^{−h_i} − 1), c_cur = 1 + 1/(2r_i), c_old = −1/(2r_i) (1 and 0 on
  first-order steps), t_out, alpha_out, sigma_out."""
  r = multistep_rows(process, num_steps=num_steps, dpm_skip=skip)
  lam = np.log(np.append(r["alpha_prev"], r["alpha_out"][-1])) - \
      np.log(np.append(r["sigma_prev"], r["sigma_out"][-1]))
  phi = -r["alpha_out"] * np.expm1(-np.diff(lam))
  return dict(t_prev=r["model_t"], alpha_prev=r["alpha_prev"], sigma_prev=r["sigma_prev"],
              ratio=r["a"], phi=phi, c_cur=r["b0"] / phi, c_old=r["b1"] / phi,
              t_out=r["t_out"], alpha_out=r["alpha_out"], sigma_out=r["sigma_out"])


def make_plan(process, *, num_steps: int = 0, dpm_skip: str = "logsnr", dpm_order: int = 2,
              dpm_sde: bool = False, sigma_policy: str = "round", denoise: bool = False,
              clip_x0: bool = True) -> Plan:
  """The DPM-Solver++ chain of M = ``num_steps`` steps (0 = 20)."""
  c = multistep_rows(process, num_steps=num_steps, dpm_skip=dpm_skip, dpm_order=dpm_order,
                     dpm_sde=dpm_sde, sigma_policy=sigma_policy)
  rows = dict(model_t=c["model_t"], alpha=c["alpha_prev"], sigma=c["sigma_prev"], a=c["a"],
              b0=c["b0"], b1=c["b1"], b2=c["b2"], g=c["g"])
  final = multistep.final_point(c["t_out"], c["alpha_out"], c["sigma_out"]) if denoise \
      else None
  return multistep.make_plan(process, rows, predict="x0", clip_x0=clip_x0, noise=dpm_sde,
                             final=final)


DPM_SKIP = Option("time steps: logsnr, time_uniform or time_quadratic (DPM-Solver's "
                  "skip_type)", choices=SKIPS)

OPTIONS = declare(
    make_plan, num_steps=NUM_STEPS, denoise=DENOISE, clip_x0=CLIP_X0,
    sigma_policy=SIGMA_POLICY,
    dpm_skip=DPM_SKIP,
    dpm_order=Option("multistep order: 2 (DPM-Solver++(2M)) or 3 (3M)", choices=ORDERS),
    dpm_sde=Option("SDE-DPM-Solver++(2M): the reverse SDE's step, noise added (dpm_order=2)"))

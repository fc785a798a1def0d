"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2), data-prediction form.

On DPM-Solver's discrete-time schedule: α_t = √ᾱ_t (VP) or 1 (VE), σ_t the
noise std, λ_t = log α_t − log σ_t, read at integer levels from the process's
float64 table, so the network is only evaluated at its own levels (no σ
interpolation). Time steps (``dpm_skip``): M + 1 levels t_0 = T−1 > ... > t_M = 0,
  logsnr (default): λ uniform between λ_{T−1} and λ_0, each rounded to the level
    of nearest λ (DPM-Solver's 'logSNR', its choice for low-resolution data; on a
    geometric VE ladder it is time_uniform);
  time_uniform: uniform in the level index, rounded (DPM-Solver's 'time_uniform');
  time_quadratic: (√(T−1)·(1 − i/M))², rounded (its 'time_quadratic');
levels merged by rounding are dropped (then NFE < M). Data prediction
x_θ = (x − σ_t ε̂)/α_t.

With h_i = λ_{t_i} − λ_{t_{i−1}} and r_i = h_{i−1}/h_i:
  i = 1:  x_{t_1} = (σ_{t_1}/σ_{t_0}) x_{t_0} − α_{t_1}(e^{−h_1} − 1) x_θ(t_0)
  i ≥ 2:  D_i = (1 + 1/(2r_i)) x_θ(t_{i−1}) − 1/(2r_i) x_θ(t_{i−2})
          x_{t_i} = (σ_{t_i}/σ_{t_{i−1}}) x_{t_{i−1}} − α_{t_i}(e^{−h_i} − 1) D_i
Lower-order final step (DPM-Solver's code, ``lower_order_final``): when M < 10
the last step is first order (D_M = x_θ(t_{M−1})). The output is x at level 0
(σ_0: 0.01 for DDPM's linear schedule); with ``denoise`` one more evaluation
returns x_θ(t_M) (DPM-Solver's ``denoise_to_zero``).

num_steps = M = NFE (0 means 20; + 1 with denoise). Recommended 10–20 (paper:
10 for good, 20 for converged samples on CIFAR-10).
"""

import functools
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from diffusion.errors import ConfigError
from diffusion.options import Option, declare
from diffusion.samplers.chain import CLIP_X0, DENOISE, NUM_STEPS, f32, split_fn
from diffusion.samplers.sigmas import eps_at

DESCRIPTION = "DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) on the discrete-time schedule"
DEFAULT_STEPS = 20
SKIPS = ("logsnr", "time_uniform", "time_quadratic")


def check(num_timesteps: int, options: Mapping) -> None:
  """λ needs two levels at least."""
  del options
  if num_timesteps < 2:
    raise ConfigError("sampling.method='dpm_solver' needs diffusion.num_timesteps >= 2.")


def dpm_timesteps(process, num_steps: int, skip: str = "logsnr") -> np.ndarray:
  """t_0 = T−1 > ... > t_M = 0 (int64 [≤ M + 1], strictly descending); see the module doc."""
  T, m = process.num_timesteps, num_steps or DEFAULT_STEPS
  if skip == "time_uniform":
    ts = np.round(np.linspace(T - 1, 0, m + 1))
  elif skip == "time_quadratic":
    ts = np.round(np.linspace(np.sqrt(T - 1), 0, m + 1) ** 2)
  else:
    scale, std = process.host_marginal()
    lam = np.log(scale) - np.log(std)                                  # descending in t
    target = np.linspace(lam[-1], lam[0], m + 1)
    ts = np.argmin(np.abs(lam[None, :] - target[:, None]), axis=1)
  ts = ts.astype(np.int64)
  return ts[np.append(True, np.diff(ts) < 0)]                          # drop merged levels


def dpm_coefficients(process, num_steps: int, skip: str = "logsnr") -> dict:
  """float64 rows of Algorithm 2, index i − 1 for the step t_{i−1} -> t_i (i = 1..M).

  Returns dict of [M] arrays: t_prev (level t_{i−1}), alpha_prev, sigma_prev,
  ratio = σ_{t_i}/σ_{t_{i−1}}, phi = −α_{t_i}(e^{−h_i} − 1), c_cur = 1 + 1/(2r_i),
  c_old = −1/(2r_i) (c_cur = 1, c_old = 0 on first-order steps), and the levels'
  alpha_out/sigma_out/t_out at t_i.
  """
  scale, std = process.host_marginal()
  ts = dpm_timesteps(process, num_steps, skip)
  m = len(ts) - 1
  alpha, sigma = scale[ts], std[ts]
  lam = np.log(alpha) - np.log(sigma)                                # λ = log α − log σ
  h = lam[1:] - lam[:-1]                                             # h_i, i = 1..M
  r = np.append(np.nan, h[:-1] / h[1:])                              # r_i = h_{i−1}/h_i
  second = np.arange(1, m + 1) >= 2
  if m < 10:                                                         # lower_order_final
    second[-1] = False
  with np.errstate(invalid="ignore", divide="ignore"):
    c_cur = np.where(second, 1.0 + 0.5 / r, 1.0)
    c_old = np.where(second, -0.5 / r, 0.0)
  return dict(t_prev=ts[:-1], alpha_prev=alpha[:-1], sigma_prev=sigma[:-1],
              ratio=sigma[1:] / sigma[:-1], phi=-alpha[1:] * np.expm1(-h),
              c_cur=c_cur, c_old=c_old, t_out=ts[1:], alpha_out=alpha[1:],
              sigma_out=sigma[1:])


@functools.partial(jax.jit, static_argnames=("spec", "denoise", "x0_range"))
def _run(dynamic, rows, x, *, spec, denoise, x0_range):
  eps_fn = spec.rebuild(dynamic)

  def body(carry, row):
    x, x0_old = carry
    eps = eps_at(eps_fn, x, row["t_prev"])
    x0 = (x - row["sigma_prev"] * eps) / row["alpha_prev"]           # data prediction x_θ
    if x0_range is not None:                                         # static thresholding
      x0 = jnp.clip(x0, x0_range[0], x0_range[1])                    # (Lu et al. 2022b §3.3)
    d = row["c_cur"] * x0 + row["c_old"] * x0_old                    # D_i (first order: x_θ)
    x = row["ratio"] * x + row["phi"] * d                            # Alg. 2 update
    return (x, x0), None

  x, _ = jax.lax.scan(body, (x, jnp.zeros_like(x)), rows)[0]
  if denoise:                                                        # denoise_to_zero
    eps = eps_at(eps_fn, x, 0)
    x = (x - rows["sigma_out"][-1] * eps) / rows["alpha_out"][-1]
  return x


def sample(eps_fn, process, shape, key, x_T=None, x0_range=(-1.0, 1.0), *, num_steps: int = 0,
           dpm_skip: str = "logsnr", denoise: bool = False, clip_x0: bool = True):
  """DPM-Solver++(2M) samples [shape] float32 from ``x_T`` or the process prior.

  With ``clip_x0`` and an ``x0_range``, each data prediction x_θ is clipped to the
  range before it enters the update (DPM-Solver++'s thresholding, its static form), as
  the DDPM and DDIM samplers clip x̂₀ of images.
  """
  clip = None if (x0_range is None or not clip_x0) else (
      float(x0_range[0]), float(x0_range[1]))
  c = dpm_coefficients(process, num_steps, dpm_skip)
  rows = {k: (jnp.asarray(v.astype(np.int32)) if k.startswith("t_") else f32(v))
          for k, v in c.items()}
  x = (jnp.asarray(x_T, jnp.float32) if x_T is not None
       else process.prior_sample(key, tuple(shape)).astype(jnp.float32))
  spec, dynamic = split_fn(eps_fn)
  return _run(dynamic, rows, x, spec=spec, denoise=bool(denoise), x0_range=clip)


OPTIONS = declare(
    sample, num_steps=NUM_STEPS, denoise=DENOISE, clip_x0=CLIP_X0,
    dpm_skip=Option("time steps: logsnr, time_uniform or time_quadratic (DPM-Solver's "
                    "skip_type)", choices=SKIPS))

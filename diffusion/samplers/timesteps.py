"""Which levels a shortened chain visits: DDIM's τ, Improved DDPM's respacing, and the
time steps of the multistep solvers (DPM-Solver, UniPC, DEIS).

DDIM's τ and the respacing are sorted int64 level indices (0 = least noise); the
solvers' grid descends and may hold fractional levels. All are computed on the host.
"""

import numpy as np

from diffusion.errors import ConfigError
from diffusion.samplers.sigmas import fractional_level, scale_of


def ddim_timesteps(num_timesteps: int, num_steps: int, skip_type: str = "uniform") -> np.ndarray:
  """DDIM sub-sequence τ (ascending int64), as ermongroup/ddim's ``sample_image``.

  uniform: range(0, T, T // S) (S=50, T=1000: 0, 20, ..., 980);
  quad: int(linspace(0, √(0.8 T), S)²) (ends at 0.8 T; may repeat early values,
  as in the reference code). num_steps = 0 means every step.
  """
  T, S = int(num_timesteps), int(num_steps) or int(num_timesteps)
  if not 1 <= S <= T:
    raise ConfigError(f"sampling.num_steps={num_steps!r} is not valid for ddim; "
                      f"it must be in 1..{T} (diffusion.num_timesteps), or 0 for all.")
  if skip_type == "uniform":
    return np.arange(0, T, T // S, dtype=np.int64)
  seq = np.linspace(0.0, np.sqrt(T * 0.8), S) ** 2
  return np.array([int(s) for s in seq], dtype=np.int64)


def space_timesteps(num_timesteps: int, section_counts) -> np.ndarray:
  """Kept steps for respaced sampling, exactly Improved DDPM's ``space_timesteps``.

  Args:
    num_timesteps: T of the original process.
    section_counts: "K" / [K1, K2, ...]: split 0..T−1 into equal sections and
      take K_i evenly strided steps from section i, both ends included; or
      "ddimK": range(0, T, stride) with exactly K elements.
  Returns:
    sorted unique int64 array of kept steps.

  The position inside a section is accumulated as improved-diffusion's respace.py
  does (``cur_idx += frac_stride``, then Python's round-half-to-even), so ties
  break the same way for every count (e.g. 21 steps of T = 1000 keep 499, where
  rounding 10 · 49.95 directly would keep 500).
  """
  T = int(num_timesteps)
  if isinstance(section_counts, str):
    if section_counts.startswith("ddim"):
      want = int(section_counts[4:])
      for stride in range(1, T):
        if len(range(0, T, stride)) == want:
          return np.arange(0, T, stride, dtype=np.int64)
      raise ConfigError(f"cannot take exactly {want} strided steps from T={T}.")
    section_counts = [int(c) for c in section_counts.split(",")]
  counts = list(section_counts)
  base, extra = divmod(T, len(counts))
  steps, start = [], 0
  for i, count in enumerate(counts):
    size = base + (1 if i < extra else 0)
    if size < count:
      raise ConfigError(f"cannot take {count} steps from a section of {size} steps (T={T}).")
    stride = 1.0 if count <= 1 else (size - 1) / (count - 1)
    position = 0.0
    for _ in range(count):
      steps.append(start + round(position))
      position += stride
    start += size
  return np.array(sorted(set(steps)), dtype=np.int64)


# ---------------------------------------------------------------------------
# The time steps of the exponential-integrator solvers (DPM-Solver, UniPC, DEIS)
# ---------------------------------------------------------------------------

SOLVER_SKIPS = ("logsnr", "time_uniform", "time_quadratic")


def solver_grid(process, num_steps: int, skip: str, sigma_policy: str = "round"):
  """The M + 1 time points t_0 = T−1 > ... > t_M = 0 of a multistep solver, with their
  signal scale α and noise std σ: (levels, alpha, sigma), float64 [≤ M + 1].

  skip (DPM-Solver's ``skip_type``, Lu et al. 2022a §3.3 and its code):
    logsnr: λ = log α − log σ uniform between λ_{T−1} and λ_0;
    time_uniform: uniform in the level, linspace(T − 1, 0, M + 1);
    time_quadratic: (√(T − 1)·(1 − i/M))² (DEIS's quadratic time, ts_order = 2).
  sigma_policy:
    round: each point rounded to the nearest level (for logsnr the level of nearest λ),
      levels merged by rounding dropped (then fewer than M steps), α and σ the levels';
      int64 levels;
    interpolate: the points kept where they fall, as fractional levels u with log σ_EDM
      linear between levels (``sigmas.fractional_level``), α = 1/√(1 + σ_EDM²) (VP) or 1
      (VE) and σ = α σ_EDM there; float64 levels.
  """
  T, m = process.num_timesteps, int(num_steps)
  scale, std = process.host_marginal()
  edm = std / scale
  lam = -np.log(edm)                                                  # λ = log α − log σ
  if skip == "logsnr":
    target = np.linspace(lam[-1], lam[0], m + 1)
    u = (np.argmin(np.abs(lam[None, :] - target[:, None]), axis=1) if sigma_policy == "round"
         else fractional_level(edm, np.exp(-target)))
  elif skip == "time_uniform":
    u = np.linspace(T - 1, 0, m + 1)
  else:
    u = np.linspace(np.sqrt(T - 1), 0, m + 1) ** 2
  if sigma_policy == "round":
    ts = np.round(u).astype(np.int64)
    ts = ts[np.append(True, np.diff(ts) < 0)]                         # drop merged levels
    return ts, scale[ts], std[ts]
  u = np.clip(np.asarray(u, np.float64), 0.0, T - 1.0)
  u[0], u[-1] = T - 1.0, 0.0
  sig = np.exp(np.interp(u, np.arange(T, dtype=np.float64), np.log(edm)))
  alpha = scale_of(process.kind, sig)
  return u, alpha, alpha * sig

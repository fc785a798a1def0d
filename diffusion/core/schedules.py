"""Noise schedules in float64 numpy: β schedules (VP) and σ ladders (VE).

Everything here is plain numpy float64 so that cumulative products and logs
are exact to ~1e-16; :mod:`diffusion.core.processes` casts the results to float32
JAX arrays once. No JAX is imported here.

Contents
  * β schedules of the DDPM code (Ho et al. 2020, ``get_beta_schedule``),
    Improved DDPM's cosine and T-scaled linear (Nichol & Dhariwal 2021, §3.2 /
    eq. 17), the ddim repo's sigmoid, and the DPM code's fixed schedule
    (Sohl-Dickstein et al. 2015, ``generate_beta_arr``).
  * Geometric σ ladders for NCSN (Song & Ermon 2019, §4.2) and the NCSNv2
    rules for choosing them (Song & Ermon 2020, techniques 1, 2 and 4).
  * Continuous Score-SDE marginals (Song et al. 2021, App. B) for the VP and
    VE SDEs, used to check the discrete schedules against their limits.
"""

import math
from typing import Tuple

import numpy as np

from diffusion.errors import ConfigError

# Names accepted by get_beta_schedule (and diffusion.schedule for VP variants).
BETA_SCHEDULES = ("linear", "quad", "warmup10", "warmup50", "const", "jsd",
                  "cosine", "sigmoid", "dpm", "scaled_linear")
# Names accepted by diffusion.schedule for VE variants.
SIGMA_SCHEDULES = ("geometric",)


# ---------------------------------------------------------------------------
# β schedules (VP)
# ---------------------------------------------------------------------------


def _check_num_timesteps(num_timesteps, field="diffusion.num_timesteps",
                         minimum=1) -> None:
  ok = isinstance(num_timesteps, (int, np.integer)) and not isinstance(
      num_timesteps, bool) and num_timesteps >= minimum
  if not ok:
    raise ConfigError(f"{field}={num_timesteps!r} is not valid; it must be an "
                      f"integer >= {minimum}.")


def _check_unit_interval(field: str, value) -> None:
  ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
  if not (ok and 0.0 < value < 1.0):
    raise ConfigError(f"{field}={value!r} is not valid; it must be a number in (0, 1).")


def _warmup_betas(beta_start: float, beta_end: float, num_timesteps: int,
                  warmup_frac: float) -> np.ndarray:
  """DDPM code: β_end everywhere, linear ramp over the first int(frac·T) steps."""
  betas = beta_end * np.ones(num_timesteps, dtype=np.float64)
  warmup_time = int(num_timesteps * warmup_frac)
  betas[:warmup_time] = np.linspace(beta_start, beta_end, warmup_time, dtype=np.float64)
  return betas


def cosine_alpha_bar(u: np.ndarray, s: float = 0.008) -> np.ndarray:
  """Improved DDPM eq. 17 without normalisation: f(u) = cos²((u + s)/(1 + s)·π/2).

  Args:
    u: normalised time t/T in [0, 1] (any shape), float64.
    s: small offset so that β near u = 0 is not too small (paper: 0.008).
  Returns:
    f(u), same shape; ᾱ(u) = f(u) / f(0).
  """
  return np.cos((np.asarray(u, np.float64) + s) / (1.0 + s) * np.pi / 2) ** 2


def _cosine_betas(num_timesteps: int, s: float, max_beta: float = 0.999) -> np.ndarray:
  """Improved DDPM ``betas_for_alpha_bar``: β_i = min(1 − ᾱ((i+1)/T)/ᾱ(i/T), 0.999)."""
  u = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps
  f = cosine_alpha_bar(u, s)
  return np.minimum(1.0 - f[1:] / f[:-1], max_beta)


def _dpm_betas(num_timesteps: int, min_beta: float = 1e-6,
               step1_beta: float = 1e-3) -> np.ndarray:
  """DPM code's fixed schedule (Sohl-Dickstein et al. 2015, ``generate_beta_arr``).

  β_t = m_t + b_t (1 − m_t − 1e−5) with b = 1/linspace(T, 2, T) (erase ~1/(T−t+2)
  of the remaining signal per step, leaving ≈ 1/T of the data variance) and the
  lower bound m_t = min_β, except m_1 = min_β + ``step1_beta`` (the first step's
  minimum variance). The code's learned perturbation of β is zero.
  """
  b = 1.0 / np.linspace(num_timesteps, 2, num_timesteps, dtype=np.float64)
  lower = np.full(num_timesteps, min_beta, dtype=np.float64)
  lower[0] += step1_beta
  return lower + b * (1.0 - lower - 1e-5)


def get_beta_schedule(name: str, num_timesteps: int, beta_start: float = 1e-4,
                      beta_end: float = 0.02, cosine_s: float = 0.008) -> np.ndarray:
  """Returns the β schedule ``name`` for T = ``num_timesteps`` steps.

  Schedules (index i = 0..T−1 is the paper's β_{i+1}):
    linear:   linspace(β_start, β_end, T)                        (DDPM, used)
    quad:     linspace(√β_start, √β_end, T)²                      (DDPM code)
    warmup10 / warmup50: β_end, first int(0.1T | 0.5T) ramp up    (DDPM code)
    const:    β_end everywhere                                    (DDPM code)
    jsd:      1/linspace(T, 1, T), i.e. β_t = 1/(T − t + 1)       (DDPM code; DPM §2.4.1)
    cosine:   Improved DDPM eq. 17, s = cosine_s, β clipped at 0.999
    sigmoid:  sigmoid(linspace(−6, 6, T))·(β_end − β_start) + β_start  (ddim repo)
    dpm:      DPM code's fixed schedule (see ``_dpm_betas``); β ∈ (0.001, 0.5]
    scaled_linear: Improved DDPM's T-scaled linear, linspace(k·β_start, k·β_end, T)
              with k = 1000/T, so any T matches DDPM's T = 1000 schedule.

  Args:
    name: one of ``BETA_SCHEDULES``.
    num_timesteps: T >= 1.
    beta_start, beta_end: in (0, 1); used by the linear family and sigmoid.
    cosine_s: cosine offset s > 0.
  Returns:
    betas: [T] float64, each in (0, 1] (jsd ends at exactly 1).
  Raises:
    ConfigError: unknown name or invalid value (names the config field).
  """
  if name not in BETA_SCHEDULES:
    choices = ", ".join(repr(a) for a in BETA_SCHEDULES)
    raise ConfigError(f"diffusion.schedule={name!r} is not valid; choose one of {choices}.")
  _check_num_timesteps(num_timesteps)
  T = int(num_timesteps)
  if name in ("linear", "quad", "warmup10", "warmup50", "sigmoid", "scaled_linear"):
    _check_unit_interval("diffusion.beta_start", beta_start)
  if name in ("linear", "quad", "warmup10", "warmup50", "const", "sigmoid",
              "scaled_linear"):
    _check_unit_interval("diffusion.beta_end", beta_end)
  if name == "cosine":
    ok = isinstance(cosine_s, (int, float)) and not isinstance(cosine_s, bool)
    if not (ok and cosine_s > 0):
      raise ConfigError(f"diffusion.cosine_s={cosine_s!r} is not valid; it must be a number > 0.")

  if name == "linear":
    betas = np.linspace(beta_start, beta_end, T, dtype=np.float64)
  elif name == "quad":
    betas = np.linspace(beta_start ** 0.5, beta_end ** 0.5, T, dtype=np.float64) ** 2
  elif name == "warmup10":
    betas = _warmup_betas(beta_start, beta_end, T, 0.1)
  elif name == "warmup50":
    betas = _warmup_betas(beta_start, beta_end, T, 0.5)
  elif name == "const":
    betas = beta_end * np.ones(T, dtype=np.float64)
  elif name == "jsd":
    betas = 1.0 / np.linspace(T, 1, T, dtype=np.float64)
  elif name == "cosine":
    betas = _cosine_betas(T, float(cosine_s))
  elif name == "sigmoid":
    z = np.linspace(-6.0, 6.0, T, dtype=np.float64)
    betas = 1.0 / (1.0 + np.exp(-z)) * (beta_end - beta_start) + beta_start
  elif name == "dpm":
    betas = _dpm_betas(T)
  else:  # scaled_linear
    scale = 1000.0 / T
    betas = np.linspace(scale * beta_start, scale * beta_end, T, dtype=np.float64)

  if not np.all((betas > 0) & (betas <= 1)):
    raise ConfigError(
        f"diffusion.num_timesteps={T!r} is not valid for diffusion.schedule={name!r}: "
        f"it gives betas outside (0, 1] (range {betas.min():.3g}..{betas.max():.3g}).")
  return betas


def alphas_cumprod(betas: np.ndarray) -> np.ndarray:
  """ᾱ_t = Π_{s<=t} (1 − β_s) in float64 (DDPM eq. 4)."""
  return np.cumprod(1.0 - np.asarray(betas, np.float64))


# ---------------------------------------------------------------------------
# σ ladders (VE) and NCSNv2's rules
# ---------------------------------------------------------------------------


def geometric_sigmas(sigma_min: float, sigma_max: float, num_levels: int) -> np.ndarray:
  """Geometric σ ladder, ascending: σ_i = σ_min (σ_max/σ_min)^{i/(L−1)}.

  NCSN (Song & Ermon 2019 §4.2): 0.01..1, L = 10; NCSNv2 CIFAR-10: 0.01..50,
  L = 232; Score-SDE ``discrete_sigmas`` is the same ladder with L = N.
  (NCSN's code stores it descending; here index 0 = least noise.)

  Returns:
    sigmas: [L] float64, sigmas[0] = σ_min, sigmas[-1] = σ_max.
  """
  for field, value in (("diffusion.sigma_min", sigma_min), ("diffusion.sigma_max", sigma_max)):
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    if not (ok and value > 0):
      raise ConfigError(f"{field}={value!r} is not valid; it must be a number > 0.")
  if not sigma_min < sigma_max:
    raise ConfigError(f"diffusion.sigma_min={sigma_min!r} is not valid; it must be "
                      f"< diffusion.sigma_max={sigma_max!r}.")
  _check_num_timesteps(num_levels, minimum=2)
  return np.exp(np.linspace(math.log(sigma_min), math.log(sigma_max), int(num_levels),
                            dtype=np.float64))


def max_pairwise_distance(x: np.ndarray, chunk: int = 1024) -> float:
  """NCSNv2 technique 1: σ_max = max_{i,j} ‖x_i − x_j‖₂ over the training set.

  Args:
    x: [N, ...] data (any float/uint dtype; scale it as the model sees it,
      e.g. [0, 1]). Flattened per example. O(N²·D) work in chunks.
    chunk: rows per block (memory ~ chunk·N float64).
  Returns:
    the largest Euclidean distance between two examples (float).
  """
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  sq = np.einsum("nd,nd->n", x, x)
  best = 0.0
  for start in range(0, len(x), chunk):
    block = x[start:start + chunk]
    # ‖a − b‖² = ‖a‖² + ‖b‖² − 2 a·b; clip tiny negative round-off.
    d2 = sq[start:start + chunk, None] + sq[None, :] - 2.0 * block @ x.T
    best = max(best, float(d2.max()))
  return math.sqrt(max(best, 0.0))


def _std_normal_cdf(z: float) -> float:
  return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def ncsnv2_overlap(gamma: float, dim: int) -> float:
  """NCSNv2 technique 2's overlap C(γ, D) = Φ(√(2D)(γ−1) + 3γ) − Φ(√(2D)(γ−1) − 3γ).

  Song & Ermon 2020 §3.2: consecutive levels overlap enough when C ≈ 0.5 (the
  released configs realise C ≈ 0.567).
  """
  a = math.sqrt(2.0 * dim) * (gamma - 1.0)
  return _std_normal_cdf(a + 3.0 * gamma) - _std_normal_cdf(a - 3.0 * gamma)


def ncsnv2_gamma(dim: int, overlap: float = 0.5) -> float:
  """Largest ratio γ > 1 with C(γ, D) >= ``overlap`` (bisection; C falls with γ)."""
  lo, hi = 1.0, 2.0
  while ncsnv2_overlap(hi, dim) > overlap:
    hi = 2.0 * hi
  for _ in range(200):
    mid = 0.5 * (lo + hi)
    lo, hi = (mid, hi) if ncsnv2_overlap(mid, dim) > overlap else (lo, mid)
  return lo


def ncsnv2_num_levels(sigma_min: float, sigma_max: float, gamma: float) -> int:
  """L such that the ladder's ratio (σ_max/σ_min)^{1/(L−1)} is at most γ."""
  return int(math.ceil(math.log(sigma_max / sigma_min) / math.log(gamma) - 1e-9)) + 1


def ncsnv2_eq4_ratio(step_lr: float, sigma_min: float, gamma: float,
                     n_steps_each: int) -> float:
  """NCSNv2 technique 4, Eq. 4: variance ratio after T Langevin steps at σ_L.

  With a = ε/σ_L² and r = 2ε/(σ_L² − σ_L²(1 − a)²):
    ratio = (1 − a)^{2T} (γ² − r) + r,   which should be ≈ 1.
  Langevin convention x ← x + α s + √(2α) z, α = ε σ_i²/σ_L².
  """
  s2 = sigma_min ** 2
  a = step_lr / s2
  r = 2.0 * step_lr / (s2 - s2 * (1.0 - a) ** 2)
  return (1.0 - a) ** (2 * n_steps_each) * (gamma ** 2 - r) + r


def ncsnv2_step_lr(sigma_min: float, gamma: float, n_steps_each: int,
                   num_grid: int = 200_001) -> float:
  """ε minimising |Eq. 4 − 1| on a log grid in (1e−10·σ_L², σ_L²).

  Where Eq. 4 never reaches 1 this is the ε of its minimum (NCSNv2 church).
  Resolution: relative grid spacing ≈ 1.2e−4.
  """
  s2 = sigma_min ** 2
  eps = np.exp(np.linspace(math.log(1e-10 * s2), math.log(s2 * (1 - 1e-9)), num_grid))
  a = eps / s2
  r = 2.0 * eps / (s2 - s2 * (1.0 - a) ** 2)
  ratio = (1.0 - a) ** (2 * n_steps_each) * (gamma ** 2 - r) + r
  return float(eps[np.argmin(np.abs(ratio - 1.0))])


def ald_step_sizes(sigmas: np.ndarray, step_lr: float) -> np.ndarray:
  """Annealed-Langevin step α_i = ε (σ_i/σ_min)² (NCSN Alg. 1; NCSN/NCSNv2 code).

  Args:
    sigmas: [L] ascending ladder; step_lr: ε. Returns [L] float64 (α at σ_min = ε).
  """
  sigmas = np.asarray(sigmas, np.float64)
  return step_lr * (sigmas / sigmas.min()) ** 2


def ncsnv2_sigmas_for_data(x: np.ndarray, sigma_min: float = 0.01,
                           overlap: float = 0.5) -> np.ndarray:
  """NCSNv2 techniques 1 + 2 applied to a data set.

  σ_max = max pairwise distance (technique 1); γ from C(γ, D) = ``overlap``
  (technique 2; paper 0.5, released configs ≈ 0.567); L = smallest count whose
  geometric ratio is <= γ.

  Args:
    x: [N, ...] training data as the model sees it (NCSN: [0, 1]).
    sigma_min: σ_L, the smallest level.
    overlap: target C.
  Returns:
    sigmas: [L] float64 ascending from sigma_min to σ_max.
  """
  x = np.asarray(x)
  sigma_max = max_pairwise_distance(x)
  dim = int(np.prod(x.shape[1:]))
  gamma = ncsnv2_gamma(dim, overlap)
  return geometric_sigmas(sigma_min, sigma_max, ncsnv2_num_levels(sigma_min, sigma_max, gamma))


# ---------------------------------------------------------------------------
# Score-SDE continuous limits (Song et al. 2021, App. B), float64
# ---------------------------------------------------------------------------


def vp_sde_marginal(t, beta_min: float = 0.1,
                    beta_max: float = 20.0) -> Tuple[np.ndarray, np.ndarray]:
  """VP SDE dx = −½β(t)x dt + √β(t) dw with β(t) = β_min + t(β_max − β_min).

  p_t(x | x₀) = N(m(t) x₀, (1 − m(t)²) I) with
  log m(t) = −¼ t² (β_max − β_min) − ½ t β_min   (Song et al. 2021 eq. 29).

  Args:
    t: time in [0, 1] (scalar or array).
  Returns:
    (mean_coeff m(t), std √(1 − m(t)²)), float64; ᾱ(t) = m(t)².
  """
  t = np.asarray(t, np.float64)
  log_m = -0.25 * t ** 2 * (beta_max - beta_min) - 0.5 * t * beta_min
  return np.exp(log_m), np.sqrt(-np.expm1(2.0 * log_m))


def vp_sde_discrete_betas(beta_min: float = 0.1, beta_max: float = 20.0,
                          num_scales: int = 1000) -> np.ndarray:
  """Score-SDE's DDPM discretisation: linspace(β_min/N, β_max/N, N) (= DDPM linear)."""
  return np.linspace(beta_min / num_scales, beta_max / num_scales, num_scales,
                     dtype=np.float64)


def ve_sde_sigma(t, sigma_min: float = 0.01, sigma_max: float = 50.0) -> np.ndarray:
  """VE SDE marginal std σ(t) = σ_min (σ_max/σ_min)^t, t in [0, 1] (eq. 31)."""
  t = np.asarray(t, np.float64)
  return sigma_min * (sigma_max / sigma_min) ** t


def ve_sde_diffusion(t, sigma_min: float = 0.01, sigma_max: float = 50.0) -> np.ndarray:
  """VE SDE diffusion coefficient g(t) = σ(t) √(2 log(σ_max/σ_min))."""
  return ve_sde_sigma(t, sigma_min, sigma_max) * math.sqrt(2.0 * math.log(sigma_max / sigma_min))

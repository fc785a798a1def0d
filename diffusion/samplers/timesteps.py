"""Which levels a shortened chain visits: DDIM's τ and Improved DDPM's respacing.

Both return sorted int64 level indices (0 = least noise), computed on the host.
"""

import numpy as np

from diffusion.errors import ConfigError


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

"""Does the forward process reach its prior? A sampler starts from the prior, so a chain
that ends short of it never saw the x_T it is started from.

VP (DDPM, DPM): x_T = √ᾱ_T x₀ + √(1 − ᾱ_T) ε keeps √ᾱ_T of the data; DDPM's linear
β 1e-4 → 0.02 over T = 1000 ends at ᾱ_T = 4e-5, the same β over T = 50 at 0.60 (the
digits still show at t = T − 1). Improved DDPM (Nichol & Dhariwal 2021, §3.2; its
``get_named_beta_schedule("linear")``) scales β by 1000/T so that any T ends near the
prior: the ``scaled_linear`` schedule. VE (NCSN): x_T = x₀ + σ_max ε covers the data only
when σ_max is at least the data's spread (NCSNv2, Song & Ermon 2020, technique 1, asks
for the largest distance between training examples; the spread used here, the RMS
distance of the data from its mean, is a weaker test).
"""

import math
from typing import Optional

import numpy as np

# ᾱ_T above this keeps more than 10% of x₀ in x_T (√1e-2).
MAX_ALPHA_BAR_T = 1e-2


def prior_warning(process, data_spread: Optional[float] = None) -> Optional[str]:
  """One line when ``process`` does not reach its prior, else None.

  Args:
    process: a VP process (``kind == "vp"``: ``alphas_cumprod``) or a VE one (``"ve"``:
      ``sigmas``).
    data_spread: the data's RMS distance from its mean, √(Σ_d Var x_d), in model space
      (for VE; None skips the VE test).
  """
  if process.kind == "vp":
    abar = float(np.asarray(process.alphas_cumprod)[-1])
    if abar > MAX_ALPHA_BAR_T:
      T = int(process.num_timesteps)
      return (f"warning: the forward process does not reach its prior: alpha_bar_T = "
              f"{abar:.3g} > {MAX_ALPHA_BAR_T:g} (x_T = {math.sqrt(abar):.2f} x_0 + "
              f"{math.sqrt(1 - abar):.2f} eps at T = {T}), while sampling starts from "
              "N(0, I); scale beta with T "
              "(diffusion.schedule=scaled_linear, Improved DDPM) or raise "
              "diffusion.num_timesteps.")
    return None
  if process.kind == "ve" and data_spread is not None:
    sigma_max = float(np.asarray(process.sigmas)[-1])
    if sigma_max < data_spread:
      return (f"warning: the forward process does not reach its prior: sigma_max = "
              f"{sigma_max:g} is below the data's spread {data_spread:.3g} (the RMS "
              "distance from its mean), so N(0, sigma_max^2 I) does not cover the data; "
              "raise diffusion.sigma_max (NCSNv2 technique 1: the largest distance between "
              "training examples).")
  return None


def data_spread(x: np.ndarray) -> float:
  """√(Σ_d Var x_d) of examples ``x`` [N, ...] (float64): their RMS distance from the mean."""
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  return float(math.sqrt(x.var(axis=0).sum()))

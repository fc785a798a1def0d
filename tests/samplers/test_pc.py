"""diffusion/samplers/pc.py: the predictor–corrector rows against score_sde's predictors."""

import math

import numpy as np
import pytest

from diffusion import samplers
from diffusion.samplers import pc


@pytest.mark.parametrize("kind", ["vp", "ve"])
@pytest.mark.parametrize("predictor", ["reverse_diffusion", "euler_maruyama"])
def test_pc_rows_score_sde(processes, kind, predictor):
  p = processes[kind]
  st = dict(num_steps=50, predictor=predictor, n_corrector=2)
  r = pc.pc_rows(p, **st)
  kept = samplers.space_timesteps(1000, "50")
  scale, std = p.host_marginal()
  a2 = scale[kept] ** 2
  assert len(r["model_t"]) == 50 + 49 * 2
  for i in (49, 20, 0):                                  # predictor leaving kept[i]
    row = (49 - i) * 3
    assert r["model_t"][row] == kept[i] and r["corrector"][row] == 0
    if kind == "vp":
      beta = 1 - a2[i] / (a2[i - 1] if i > 0 else 1.0)
      c_x = 2 - math.sqrt(1 - beta) if predictor == "reverse_diffusion" else 1 + beta / 2
    else:
      beta = std[kept[i]] ** 2 - (std[kept[i - 1]] ** 2 if i > 0 else 0.0)
      c_x = 1.0
    np.testing.assert_allclose([r["c_x"][row], r["c_s"][row], r["g"][row]],
                               [c_x, beta, math.sqrt(beta) if i > 0 else 0.0], rtol=1e-12)
    if i > 0:                                            # then correctors at kept[i−1]
      b_prev = 1 - a2[i - 1] / a2[i - 2] if i > 1 else 1 - a2[0]
      for j in (1, 2):
        assert r["corrector"][row + j] == 1 and r["model_t"][row + j] == kept[i - 1]
        np.testing.assert_allclose(r["alpha"][row + j], 1 - b_prev if kind == "vp" else 1.0,
                                   rtol=1e-12)

"""DDIM Table 1's "σ̂" sampler: ancestral sampling on DDIM's τ (issue 33 item 5).

The rows against ermongroup/ddim's ``ddpm_steps`` written here in float64: with a_t = ᾱ_t
(a_{−1} = 1) along τ and s the previous element, β_t = 1 − a_t/a_s, x̂₀ =
x/√a_t − √(1/a_t − 1) ε̂ (clamped), mean = (√a_s β_t x̂₀ + √(1 − β_t)(1 − a_s) x)/(1 − a_t),
log-variance log β_t, no noise on the last step."""

import numpy as np
import pytest

from diffusion.samplers import ancestral, timesteps


@pytest.mark.parametrize("steps,skip", [(10, "uniform"), (50, "quad"), (100, "quad")])
def test_rows_are_ddpm_steps_on_tau(vp, steps, skip):
  plan = ancestral.make_plan(vp, num_steps=steps, ancestral_steps="ddim_tau", skip_type=skip)
  tau = np.unique(timesteps.ddim_timesteps(1000, steps, skip))    # quad repeats: no-op steps
  a = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000, dtype=np.float64))
  rows = {k: np.asarray(v, np.float64) for k, v in plan.rows.items()}
  np.testing.assert_array_equal(rows["model_t"], tau[::-1])
  for i, t in enumerate(tau[::-1]):                               # the step leaving τ_j = t
    j = len(tau) - 1 - i
    a_t, a_s = a[t], (a[tau[j - 1]] if j > 0 else 1.0)
    beta = 1 - a_t / a_s
    np.testing.assert_allclose(rows["recip_scale"][i], 1 / np.sqrt(a_t), rtol=1e-6)
    np.testing.assert_allclose(rows["eps_to_x0"][i], np.sqrt(1 / a_t - 1), rtol=1e-6)
    np.testing.assert_allclose(rows["coef_x0"][i], np.sqrt(a_s) * beta / (1 - a_t), rtol=2e-5)
    np.testing.assert_allclose(rows["coef_xt"][i], np.sqrt(1 - beta) * (1 - a_s) / (1 - a_t),
                               rtol=2e-5, atol=1e-7)
    if j > 0:
      np.testing.assert_allclose(rows["log_var"][i], np.log(beta), rtol=2e-5)
    assert rows["noise"][i] == (1.0 if j > 0 else 0.0)
  assert plan.options["clip_x0"]


def test_the_default_respacing_is_unchanged(vp):
  """ancestral_steps='respace' (the default) is Improved DDPM's space_timesteps."""
  plan = ancestral.make_plan(vp, num_steps=50)
  np.testing.assert_array_equal(np.asarray(plan.rows["model_t"]),
                                timesteps.space_timesteps(1000, "50")[::-1])

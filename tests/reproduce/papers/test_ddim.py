"""diffusion/reproduce/papers/ddim.py: DDIM Table 1's σ̂ row is ancestral
sampling with the respaced fixedlarge variance on DDIM's τ (the code's ``ddpm_steps``),
with the paper's FIDs."""

from diffusion.reproduce.papers import ddim


def test_the_sigma_hat_row_is_ancestral_on_ddims_tau():
  protocols = ddim.CIFAR10_WEIGHTS.tiers["weights"].overrides["protocols"]
  for steps, fid in zip(ddim.TABLE1_STEPS, ddim.SIGMA_HAT_FID):
    p = protocols[f"fid_sigmahat_S{steps}"]["sampling"]
    assert p == {"method": "ancestral", "ancestral_steps": "ddim_tau", "num_steps": steps,
                 "skip_type": "uniform" if steps == 1000 else "quad",
                 "var_type": "fixedlarge", "clip_x0": True}
    metric = next(m for m in ddim.CIFAR10_WEIGHTS.metrics if m.name == f"fid_sigmahat_S{steps}")
    assert metric.paper == fid

"""The fast samplers on DDPM's released CIFAR-10 weights: DPM-Solver (Lu et al. 2022),
EDM's Heun (Karras et al. 2022) and the probability-flow ODE with its exact likelihood
(Song et al. 2021), sample quality against the number of network evaluations (NFE)."""

from diffusion.reproduce import generic
from diffusion.reproduce.common import GPU
from diffusion.reproduce.generic import FID_PROTOCOL, fid_protocol
from diffusion.reproduce.schema import Baseline, Budget, Metric

# No paper reports these samplers on exactly these weights: the entry establishes the
# numbers, with a band that says what "as good as 1,000 ancestral steps" means.
SAMPLERS = {"dpm_solver": {"method": "dpm_solver"}, "heun": {"method": "heun"}}
NFE_LIMITS = ((10, 12.0), (20, 6.0), (50, 4.5))   # (NFE, the largest FID accepted)


def _num_steps(name: str, nfe: int) -> int:
  """The sampler's num_steps for ``nfe`` evaluations: heun's N σ steps cost 2N − 1."""
  return nfe if name == "dpm_solver" else (nfe + 1) // 2


CIFAR10_WEIGHTS = Baseline(
    name="fast_samplers_cifar10_weights", paper="Lu et al. 2022 / Karras et al. 2022 / "
    "Song et al. 2021 on DDPM's weights", where="sample quality against NFE",
    dataset="CIFAR-10", experiment=generic.evaluate_weights, config=None,
    metrics=tuple(
        Metric(f"fid_{name}_{nfe}", "no number on these weights", (0.0, limit),
               "a baseline to establish; the bound is the quality a user would accept at "
               "that cost (1,000 ancestral steps give 3.17)",
               FID_PROTOCOL + f"; {name} at {nfe} network evaluations, x̂₀ clipped.")
        for name in SAMPLERS for nfe, limit in NFE_LIMITS)
    + (Metric("fid_ode", "no number on these weights", (0.0, 5.0),
              "score_sde's probability-flow FID of its DDPM-architecture VP model is 3.37",
              FID_PROTOCOL + "; the probability-flow ODE, Tsit5, rtol = atol = 1e-5."),
       Metric("ode_bpd", 3.28, (3.18, 3.38), "score_sde's exact likelihood of this model",
              "bits/dim through the probability-flow ODE, 10,000 test images, uniform "
              "dequantization, one Rademacher probe per image.")),
    tiers={"weights": Budget({"protocols": dict(
        {f"{name}_{nfe}": fid_protocol(dict(sampling, num_steps=_num_steps(name, nfe)),
                                       {f"fid_{name}_{nfe}": "fid"})
         for name, sampling in SAMPLERS.items() for nfe, _ in NFE_LIMITS},
        ode=fid_protocol({"method": "ode"}, {"fid_ode": "fid"}),
        likelihood={"eval": "ode_bpd", "eval.ode_bpd.num_examples": 10_000,
                    "metrics": {"ode_bpd": "ode_bpd"}})}, 480, GPU, runnable_here=False)},
    note="The DDPM CIFAR-10 release imported (--weights), as ddpm_cifar10_weights. heun's "
         "N σ steps cost 2N − 1 evaluations (N = 5, 10, 25).")

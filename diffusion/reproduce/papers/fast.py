"""The fast samplers on DDPM's released CIFAR-10 weights: DPM-Solver (Lu et al. 2022),
EDM's Heun (Karras et al. 2022), iPNDM and DEIS (Zhang & Chen 2023), UniPC (Zhao et al.
2023) and the probability-flow ODE with its exact likelihood (Song et al. 2021), sample
quality against the number of network evaluations (NFE) — the few-step samplers under both
σ policies (a discrete-time network fed rounded levels or fractional ones), a table no paper
reports on these weights."""

from diffusion.reproduce import generic
from diffusion.reproduce.common import GPU
from diffusion.reproduce.generic import FID_PROTOCOL, fid_protocol
from diffusion.reproduce.schema import Baseline, Budget, Metric

# No paper reports these samplers on exactly these weights: the entry establishes the
# numbers, with a band that says what "as good as 1,000 ancestral steps" means.
SAMPLERS = {"dpm_solver": {"method": "dpm_solver"}, "heun": {"method": "heun"}}
NFE_LIMITS = ((10, 12.0), (20, 6.0), (50, 4.5))   # (NFE, the largest FID accepted)


def _num_steps(name: str, nfe: int) -> int:
  """The sampler's num_steps for ``nfe`` evaluations: heun's N σ steps cost 2N − 1 (the
  largest N within ``nfe``); the others take one evaluation per step."""
  return (nfe + 1) // 2 if name == "heun" else nfe


# The few-step table: the samplers that lead at 5–10 NFE on EDM's checkpoint
# (baselines: diff-sampler's CIFAR-10 table) and heun, each under both σ policies.
FEW_STEP = {"ipndm": {"method": "ipndm"}, "unipc": {"method": "unipc"},
            "dpm_solver_3m": {"method": "dpm_solver", "dpm_order": 3},
            "deis": {"method": "deis"}, "heun": {"method": "heun"}}
FEW_NFE_LIMITS = ((5, 40.0), (6, 30.0), (8, 20.0), (10, 12.0), (20, 6.0))
POLICIES = ("round", "interpolate")


def _few(name: str, policy: str, nfe: int) -> str:
  return f"fid_{name}_{policy}_{nfe}"


def _few_columns(name: str):
  """(NFE, bound) of the few-step table for ``name``: a column whose step count equals the
  previous column's (heun at 6 NFE is N = 3, as at 5) is left out."""
  out, seen = [], set()
  for nfe, limit in FEW_NFE_LIMITS:
    if _num_steps(name, nfe) not in seen:
      seen.add(_num_steps(name, nfe))
      out.append((nfe, limit))
  return tuple(out)


def _nfe_words(name: str, nfe: int) -> str:
  steps = _num_steps(name, nfe)
  return f"{2 * steps - 1} network evaluations (N = {steps} σ steps)" if name == "heun" \
      else f"{nfe} network evaluations"


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
              "dequantization, one Rademacher probe per image."))
    + tuple(
        Metric(_few(name, policy, nfe), "no number on these weights", (0.0, limit),
               "a baseline to establish (EDM's checkpoint: iPNDM 13.6 at 5 NFE, 2.8 at 10); "
               "the bound is the quality a user would accept at that cost",
               FID_PROTOCOL + f"; {name} at {_nfe_words(name, nfe)}, sigma_policy={policy}, "
               "x̂₀ clipped.")
        for name in FEW_STEP for policy in POLICIES for nfe, limit in _few_columns(name)),
    tiers={"weights": Budget({"protocols": dict(
        {f"{name}_{nfe}": fid_protocol(dict(sampling, num_steps=_num_steps(name, nfe)),
                                       {f"fid_{name}_{nfe}": "fid"})
         for name, sampling in SAMPLERS.items() for nfe, _ in NFE_LIMITS},
        **{_few(name, policy, nfe)[4:]: fid_protocol(
            dict(sampling, num_steps=_num_steps(name, nfe), sigma_policy=policy),
            {_few(name, policy, nfe): "fid"})
           for name, sampling in FEW_STEP.items() for policy in POLICIES
           for nfe, _ in _few_columns(name)},
        ode=fid_protocol({"method": "ode"}, {"fid_ode": "fid"}),
        likelihood={"eval": "ode_bpd", "eval.ode_bpd.num_examples": 10_000,
                    "metrics": {"ode_bpd": "ode_bpd"}})}, 630, GPU, runnable_here=False)},
    note="The DDPM CIFAR-10 release imported (--weights), as ddpm_cifar10_weights. heun's "
         "N σ steps cost 2N − 1 evaluations (N = 5, 10, 25; in the few-step table N = 3, "
         "4, 5, 10: 5, 7, 9, 19 NFE). The few-step table is 48 FIDs of 50,000 samples, "
         "about 2.5 h of the entry's 10.5 h on one H100.")

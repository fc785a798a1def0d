"""Song et al. 2020, "Denoising Diffusion Implicit Models" (DDIM): Table 1's pattern
(quality against the number of steps S for several η) on digits, and Table 1 itself from
DDPM's released CIFAR-10 weights."""

import os

from diffusion.reproduce import common, generic, plots
from diffusion.reproduce.common import CLASSIFIER_PROTOCOL, CPU, GPU, HOLDS
from diffusion.reproduce.generic import FID_PROTOCOL, fid_protocol
from diffusion.reproduce.schema import Baseline, Budget, Metric, Outcome

# ---------------------------------------------------------------------------
# Table 1's pattern on digits: quality against steps S for η in {0, 0.5, 1}
# ---------------------------------------------------------------------------

DIGITS_STEPS = (10, 20, 50, 100)   # Table 1's columns a CPU budget samples (not S = 1000)
DIGITS_ETAS = (0.0, 0.5, 1.0)


def ddim_steps(baseline, budget, workdir: str, seed: int = 0) -> Outcome:
  """One DDPM (L_simple) on digits; the classifier metric of DDIM samples for every
  (S, η). Claims: η = 0 is best at S = 10, and the gap to η = 1 closes by S = 100."""
  config = common.load_config_file(baseline.config, budget.overrides)
  _, params, step = common.train_and_restore(config, os.path.join(workdir, "run"))
  table = {}
  for eta in DIGITS_ETAS:
    for s in DIGITS_STEPS:
      ddim = common.with_sampling(config, method="ddim", num_steps=s, eta=eta)
      row = common.measured_once(workdir, f"ddim_eta{eta:g}_S{s}", ddim, step, seed,
                                 lambda: common.quality(ddim, params, step,
                                                        os.path.join(workdir, "run"), seed))
      table[(eta, s)] = row["eval/cfid"]
  gap10 = table[(1.0, 10)] - table[(0.0, 10)]
  gap100 = table[(1.0, 100)] - table[(0.0, 100)]
  measured = {f"cfid_eta{eta:g}_S{s}": v for (eta, s), v in table.items()}
  measured["eta0_best_at_S10"] = float(table[(0.0, 10)] <= min(table[(0.5, 10)],
                                                               table[(1.0, 10)]))
  measured["gap_closes_by_S100"] = float(gap100 < 0.5 * gap10)
  pic = _plot_steps(os.path.join(workdir, "ddim_steps.png"), table,
                    config.eval.classifier_fid.num_samples, seed)
  return Outcome(measured, [pic], {"gap_S10": gap10, "gap_S100": gap100})


@plots.figure
def _plot_steps(path: str, table, num_samples: int, seed: int) -> str:
  """The table's cfid of every (η, S): one sample set of ``num_samples`` per point, drawn
  with sampling seed ``seed`` (the numbers are the table's, not a mean over seeds)."""
  plt = plots.pyplot()
  fig, ax = plt.subplots(figsize=(5.5, 4))
  for eta in DIGITS_ETAS:
    ax.plot(DIGITS_STEPS, [table[(eta, s)] for s in DIGITS_STEPS], marker="o",
            label=f"η = {eta:g}")
  ax.set(xscale="log", xlabel="sampling steps S", ylabel="classifier Fréchet distance",
         title=f"DDIM Table 1's pattern on digits\n{num_samples} samples per point, "
               f"sampling seed {seed} (the table's numbers)")
  ax.title.set_fontsize(10)
  ax.set_xticks(DIGITS_STEPS, [str(s) for s in DIGITS_STEPS])
  ax.legend()
  return plots.save(fig, path)


STEPS = Baseline(
    name="ddim_steps", paper="Song et al. 2020 (DDIM)", where="Table 1 (pattern)",
    dataset="digits 8x8", experiment=ddim_steps, config="configs/ddpm/digits.py",
    metrics=(
        Metric("eta0_best_at_S10", "η = 0 best at S = 10", HOLDS,
               "DDIM Table 1: at 10 steps η = 0 gives FID 13.36 vs 41.07 for η = 1",
               CLASSIFIER_PROTOCOL + " DDIM with S in {10, 20, 50, 100}, η in "
               "{0, 0.5, 1}, uniform τ, x0 clipped.",
               claim="cfid(η=0, S=10) is the lowest of the three η"),
        Metric("gap_closes_by_S100", "gap closes", HOLDS,
               "DDIM Table 1: the η = 1 minus η = 0 gap shrinks from 27.7 (S = 10) to "
               "1.6 (S = 100); we ask for less than half the S = 10 gap",
               "cfid(η=1) - cfid(η=0) at S = 100 vs S = 10.",
               claim="gap(S=100) < gap(S=10) / 2"),
    ),
    # A deterministic (η = 0) chain shows every error of the network: the EMA decay
    # suits the run length here (0.995^2000 ≈ 5e-5 of the initialisation is left in
    # the averaged weights; the digits config's 0.999 leaves 0.999^2000 ≈ 14%, and
    # η = 0 then scored cfid ≈ 100 at every S while η = 1 scored 27-56).
    tiers={"cpu": Budget(dict(common.SMALL_DIGITS_UNET, **{"training.ema_decay": 0.995}), 12,
                         CPU)})

# ---------------------------------------------------------------------------
# Table 1 (CIFAR-10) from DDPM's released weights
# ---------------------------------------------------------------------------

# The paper's code does not clip x̂₀ in DDIM (``generalized_steps``) and uses quadratic τ
# for CIFAR-10; S = 1000 visits every step. The σ̂ row is ancestral sampling on the same τ
# with the respaced fixedlarge variance 1 − ᾱ_t/ᾱ_s and x̂₀ clipped (the code's
# ``ddpm_steps``): ``ancestral_steps='ddim_tau'``.
TABLE1_STEPS = (10, 20, 50, 100, 1000)   # Table 1's columns S
TABLE1_FID = {0.0: (13.36, 6.84, 4.67, 4.16, 4.04), 0.2: (14.04, 7.11, 4.77, 4.25, 4.09),
              0.5: (16.66, 8.35, 5.25, 4.46, 4.29), 1.0: (41.07, 18.36, 8.01, 5.78, 4.73)}
SIGMA_HAT_FID = (367.43, 133.37, 32.72, 9.99, 3.17)   # Table 1's "σ̂" row


def _fid_name(eta: float, steps: int) -> str:
  return f"fid_eta{eta:g}_S{steps}".replace(".", "p")


def _sigma_hat_name(steps: int) -> str:
  return f"fid_sigmahat_S{steps}"


def _tau(steps: int) -> str:
  return "uniform" if steps == 1000 else "quad"


CIFAR10_WEIGHTS = Baseline(
    name="ddim_cifar10_weights", paper="Song et al. 2020 (DDIM)", where="Table 1 (CIFAR-10)",
    dataset="CIFAR-10", experiment=generic.evaluate_weights, config=None,
    metrics=tuple(
        Metric(_fid_name(eta, s), fid, (0.92 * fid, 1.08 * fid),
               "±8%: sampling seeds and the Inception port; only the S = 50 cells of η = 0 "
               "and 1 are confirmed from the paper, the others to be checked",
               FID_PROTOCOL + f"; DDIM η = {eta:g}, S = {s}, "
               + ("every step" if s == 1000 else "quadratic τ") + ", x̂₀ not clipped.")
        for eta, row in TABLE1_FID.items() for s, fid in zip(TABLE1_STEPS, row))
    + tuple(
        Metric(_sigma_hat_name(s), fid, (0.92 * fid, 1.08 * fid),
               "±8%: sampling seeds and the Inception port; S = 1000 is DDPM's own sampler "
               "(3.17 in DDPM's Table 1), the others to be checked",
               FID_PROTOCOL + f"; DDIM's σ̂: ancestral, fixedlarge respaced on DDIM's τ "
               f"(S = {s}, " + ("every step" if s == 1000 else "quadratic τ")
               + "), x̂₀ clipped.")
        for s, fid in zip(TABLE1_STEPS, SIGMA_HAT_FID)),
    tiers={"weights": Budget({"protocols": {
        **{_fid_name(eta, s): fid_protocol(
            {"method": "ddim", "eta": eta, "num_steps": s, "clip_x0": False,
             "skip_type": _tau(s)},
            {_fid_name(eta, s): "fid"})
           for eta in TABLE1_FID for s in TABLE1_STEPS},
        **{_sigma_hat_name(s): fid_protocol(
            {"method": "ancestral", "ancestral_steps": "ddim_tau", "num_steps": s,
             "skip_type": _tau(s), "var_type": "fixedlarge", "clip_x0": True},
            {_sigma_hat_name(s): "fid"})
           for s in TABLE1_STEPS}}}, 750, GPU, runnable_here=False)},
    note="The DDPM CIFAR-10 release imported (--weights), as ddpm_cifar10_weights; 25 FIDs "
         "of 50,000 samples (about 12.5 h with the two S = 1000 columns).")

"""Song & Ermon 2019, "Generative Modeling by Estimating Gradients of the Data
Distribution" (NCSN): Fig. 3 (annealed against plain Langevin on a two-mode mixture, with
the exact and a learned score), Figs. 4-5 on digits (NCSN's RefineNet beside the U-Net),
the recipe on MNIST (GPU tier) and Table 1 on CIFAR-10 (paper tier)."""

import math
import os
from typing import Any, Dict

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from diffusion import api, evals, samplers
from diffusion.config import parse_config
from diffusion.errors import ConfigError
from diffusion.models.analytic import AnalyticMixture
from diffusion.reproduce import common, generic, plots
from diffusion.reproduce.common import CPU, GPU
from diffusion.reproduce.schema import Baseline, Budget, Metric, Outcome

# ---------------------------------------------------------------------------
# Fig. 3: annealed vs plain Langevin on the two-mode mixture
# ---------------------------------------------------------------------------

MIXTURE = dict(weights=(0.8, 0.2), means=((5.0, 5.0), (-5.0, -5.0)), stds=(1.0, 1.0))
TOY_SIGMAS = dict(variant="ncsn", schedule="geometric", num_timesteps=10, sigma_min=1.0,
                  sigma_max=20.0)
LANGEVIN = dict(method="annealed_langevin", n_steps_each=100, step_size=0.1,
                langevin_form="paper", denoise=False)


def heavy_mode_share(x) -> float:
  """The fraction of points nearer (5, 5) than (−5, −5)."""
  x = np.asarray(x)
  return float(np.mean(((x - 5.0) ** 2).sum(1) < ((x + 5.0) ** 2).sum(1)))


def _toy_init(seed: int, n: int = 1280):
  """NCSN's toy runner: n points uniform on [−8, 8]²."""
  return jax.random.uniform(jax.random.PRNGKey(seed), (n, 2), minval=-8.0, maxval=8.0)


def _langevin_shares(eps_fn, data_score, seeds: int, ve) -> Dict[str, Any]:
  annealed, plain, last = [], [], {}
  for s in range(seeds):
    init = _toy_init(100 + s)
    xa = api.sample(eps_fn, ve, init.shape, jax.random.PRNGKey(200 + s), LANGEVIN,
                    init=init)
    xp = samplers.langevin_dynamics(data_score, init, jax.random.PRNGKey(300 + s), 0.1, 1000,
                                    form="paper")
    annealed.append(heavy_mode_share(xa))
    plain.append(heavy_mode_share(xp))
    last = {"annealed": np.asarray(xa), "plain": np.asarray(xp), "init": np.asarray(init)}
  return {"annealed": float(np.mean(annealed)), "plain": float(np.mean(plain)),
          "annealed_se": float(np.std(annealed, ddof=1) / math.sqrt(seeds)) if seeds > 1 else 0.0,
          "plain_se": float(np.std(plain, ddof=1) / math.sqrt(seeds)) if seeds > 1 else 0.0,
          "points": last}


@plots.figure
def _plot_langevin(path: str, shares: Dict[str, Any], seeds: int, title: str) -> str:
  """NCSN Fig. 3's two panels: the points of the last seed (``shares["points"]``), each
  panel titled with that seed's share beside the mean ± standard error over ``seeds``
  seeds that the table reports (``shares[key]``, ``shares[key + "_se"]``)."""
  plt = plots.pyplot()
  grid = np.linspace(-9, 9, 200)
  gx, gy = np.meshgrid(grid, grid)
  xy = np.stack([gx, gy], -1)
  density = sum(w * np.exp(-0.5 * ((xy - np.asarray(m)) ** 2).sum(-1)) / (2 * np.pi)
                for w, m in zip(MIXTURE["weights"], MIXTURE["means"]))
  fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), sharey=True)
  for ax, key, name in ((axes[0], "plain", "Langevin dynamics"),
                        (axes[1], "annealed", "annealed Langevin dynamics")):
    ax.contour(gx, gy, density, levels=8, cmap="Greys", linewidths=0.6)
    p = shares["points"][key]
    ax.scatter(p[:, 0], p[:, 1], s=2, c="tab:blue")
    # The points are one seed's; the table's number is the mean over all seeds: say both.
    ax.set(title=f"{name}\nseed {seeds} of {seeds}: {heavy_mode_share(p):.3f} at (5, 5); "
                 f"mean of {seeds} seeds {shares[key]:.3f} ± {shares[key + '_se']:.3f}",
           xlim=(-9, 9), ylim=(-9, 9))
    ax.title.set_fontsize(9)
  fig.suptitle(title)
  return plots.save(fig, path)


def ncsn_toy_exact(baseline, budget, workdir: str, seed: int = 0) -> Outcome:
  """NCSN Fig. 3 with the exact scores: annealed Langevin over σ 20 → 1 (10 levels x 100
  steps, ε = 0.1, NCSN's toy runner) with the noised mixture's ε, plain Langevin with
  the data score; the share of samples in the heavy (0.8) mode, mean over seeds."""
  del baseline, seed
  mixture = AnalyticMixture.diagonal(MIXTURE["weights"], MIXTURE["means"], MIXTURE["stds"])
  ve = api.make_process(TOY_SIGMAS)
  eps_fn = lambda x, t: mixture.apply({}, x, ve.signal_scale(t), ve.noise_std(t))  # noqa: E731
  score = lambda x: mixture.apply({}, x, 1.0, 0.0, method=AnalyticMixture.score)  # noqa: E731
  seeds = int(budget.overrides.get("seeds", 10))
  r = _langevin_shares(eps_fn, score, seeds, ve)
  pic = _plot_langevin(os.path.join(workdir, "ncsn_fig3_exact.png"), r, seeds,
                       "NCSN Fig. 3, exact scores")
  return Outcome({"annealed_share": r["annealed"], "plain_share": r["plain"]}, [pic],
                 {k: v for k, v in r.items() if k != "points"})


def ncsn_toy_learned(baseline, budget, workdir: str, seed: int = 0) -> Outcome:
  """NCSN Fig. 3 with a learned score: configs/ncsn/toy_mixture.py (an MLP trained by DSM
  on the mixture over σ 1 → 20) drives both samplers; plain Langevin uses the learned
  score at the smallest level, σ = 1."""
  del seed
  config = common.load_config_file(baseline.config, {k: v for k, v in budget.overrides.items()
                                                     if k != "seeds"})
  family, params, _ = common.train_and_restore(config, os.path.join(workdir, "run"))
  eps_fn = family.eps_fn(params)
  t0 = lambda x: jnp.zeros((x.shape[0],), jnp.int32)  # noqa: E731
  score = lambda x: family.process.eps_to_score(eps_fn(x, t0(x)), t0(x))  # noqa: E731
  seeds = int(budget.overrides.get("seeds", 10))
  r = _langevin_shares(eps_fn, score, seeds, family.process)
  pic = _plot_langevin(os.path.join(workdir, "ncsn_fig3_learned.png"), r, seeds,
                       "NCSN Fig. 3, learned score (DSM, MLP)")
  return Outcome({"annealed_share": r["annealed"], "plain_share": r["plain"]}, [pic],
                 {k: v for k, v in r.items() if k != "points"})


# ---------------------------------------------------------------------------
# Figs. 4-5 on digits: NCSN's RefineNet beside the U-Net at the same budget
# ---------------------------------------------------------------------------

NETWORKS = {"refinenet": "NCSN RefineNet", "unet": "U-Net"}
GRID_SAMPLES = 100     # the uncurated grid: the first 100 of the scored samples, 10 x 10
LANGEVIN_CHAINS = 10   # columns of the intermediate-samples figure


def _digits_configs(baseline, budget) -> Dict[str, ml_collections.ConfigDict]:
  """The RefineNet (``baseline.config``) and U-Net (``budget.overrides["unet"]["config"]``)
  configs with the tier's shared overrides, the U-Net's own model overrides on top.

  Raises:
    ConfigError: the two differ outside ``model`` (then they would not share one budget).
  """
  overrides = dict(budget.overrides)
  unet = dict(overrides.pop("unet"))
  configs = {"refinenet": common.load_config_file(baseline.config, overrides),
             "unet": common.load_config_file(unet.pop("config"), dict(overrides, **unet))}
  resolved = {k: parse_config(c).to_dict() for k, c in configs.items()}
  for key, section in resolved["unet"].items():
    if key != "model" and section != resolved["refinenet"][key]:
      raise ConfigError(f"{baseline.name}: the RefineNet and U-Net configs differ in "
                        f"{key!r}; the comparison needs one budget (they may differ in "
                        "'model' only).")
  return configs


def ncsn_digits_refinenet(baseline, budget, workdir: str, seed: int = 0) -> Outcome:
  """NCSN's MNIST figures on the 8x8 digits: NCSN's RefineNet and the U-Net trained with
  one budget (NCSN's recipe, same steps, batch, lr, σ ladder and annealed Langevin);
  the classifier metric of each network's samples, and the pictures of NCSN Fig. 5
  (uncurated samples, both networks) and Fig. 4 (the RefineNet's intermediate samples,
  one row per σ level). Each network trains in ``workdir/<network>``; its scored samples
  are kept there, so a rerun after an interruption resumes where it stopped."""
  configs = _digits_configs(baseline, budget)
  rows, pictures = {}, []
  for name, label in NETWORKS.items():
    config, run_dir = configs[name], os.path.join(workdir, name)
    family, params, step = common.train_and_restore(config, run_dir)
    (evaluator,) = evals.make_evaluators(family, run_dir, ["classifier_fid"], seed=seed)
    # The evaluator's own draw (its key), kept, then scored: the protocol of common.quality.
    images = common.samples_once(run_dir, "quality_samples", config, step, seed,
                                 lambda: evaluator.samples(params, step, None, salt=5))
    common.check_stop()
    scores = evaluator.run(params, step, images)
    rows[name] = {k[len("eval/"):]: v for k, v in scores.items()}
    rows[name].update(step=step, params=int(sum(np.size(p) for p in
                                                jax.tree_util.tree_leaves(params))))
    pictures.append(plots.image_grid(
        os.path.join(workdir, f"ncsn_fig5_{name}.png"), images[:GRID_SAMPLES],
        f"NCSN Fig. 5 on digits: {label} ({rows[name]['params']:,} parameters, {step:,} "
        f"steps)\nthe first {min(GRID_SAMPLES, len(images))} of the {len(images)} scored "
        f"samples, uncurated\ncfid {rows[name]['cfid']:.1f} (real test digits "
        f"{rows[name]['cfid_floor']:.1f}); confident {rows[name]['confident']:.0%} (real "
        f"{rows[name]['confident_real']:.0%})"))
    if name == "refinenet":
      pictures.append(_langevin_rows(os.path.join(workdir, "ncsn_fig4_refinenet.png"),
                                     family, params, seed, label))
  r, u = rows["refinenet"], rows["unet"]
  measured = {"cfid_refinenet_over_unet": r["cfid"] / u["cfid"],
              "confident_refinenet_over_real": r["confident"] / r["confident_real"],
              "cfid_refinenet": r["cfid"], "cfid_unet": u["cfid"],
              "cfid_floor": r["cfid_floor"], "confident_refinenet": r["confident"],
              "confident_unet": u["confident"], "confident_real": r["confident_real"],
              "classes_refinenet": r["classes"], "classes_unet": u["classes"]}
  return Outcome(measured, pictures, details=rows)


@plots.figure
def _langevin_rows(path: str, family, params, seed: int, label: str) -> str:
  """NCSN Fig. 4: ``LANGEVIN_CHAINS`` chains of the config's annealed Langevin sampler
  (their own key, not the scored samples), one row per state: the U[0, 1] start, then
  the end of each σ level, largest σ first."""
  settings = family.config.sampling
  shape = (LANGEVIN_CHAINS, *family.example_shape)
  _, trajectory = api.sample(family.eps_fn(params), family.process, shape,
                             jax.random.PRNGKey(seed + 7), settings,
                             x0_range=family.x_range, trajectory_every=settings.n_steps_each)
  states = np.asarray(trajectory)                              # [L + 1, chains, H, W, C]
  sigmas = np.asarray(family.process.sigmas)[::-1]             # largest first, as visited
  labels = ["U[0, 1] start"] + [f"σ = {s:.3g}" for s in sigmas]
  images = family.to_uint8(states.reshape(-1, *family.example_shape))
  return plots.image_grid(path, images, f"NCSN Fig. 4 on digits: {label}\nannealed Langevin, "
                          f"{settings.n_steps_each} steps per level, ε = {settings.step_size:g}"
                          f"\n{LANGEVIN_CHAINS} chains (columns, not the scored samples); each "
                          "row is the state after that level", ncols=LANGEVIN_CHAINS,
                          row_labels=labels)


# ---------------------------------------------------------------------------
# The entries
# ---------------------------------------------------------------------------

FIG3_EXACT = Baseline(
    name="ncsn_fig3_exact", paper="Song & Ermon 2019 (NCSN)", where="Fig. 3",
    dataset="0.8 N((5,5), I) + 0.2 N((-5,-5), I)", experiment=ncsn_toy_exact,
    config=None,
    metrics=(
        Metric("annealed_share", 0.8, (0.75, 0.83),
               "the true weight is 0.8; NCSN's toy runner gives 0.785 ± 0.008 over 10 "
               "seeds (re-run), so ±0.03 around it",
               "share of 1280 points from U[-8, 8]^2 nearer (5, 5), after annealed "
               "Langevin (σ 20 -> 1, 10 levels x 100 steps, ε = 0.1) with the exact "
               "noised score; mean of 10 seeds."),
        Metric("plain_share", 0.5, (0.45, 0.55),
               "plain Langevin cannot move mass between the modes: the initial 0.5 "
               "stays (re-run: 0.511 ± 0.009)",
               "the same points after 1000 plain Langevin steps (ε = 0.1) with the "
               "exact data score; mean of 10 seeds."),
    ),
    tiers={"cpu": Budget({"seeds": 10}, 0.5, CPU)},
    note="No training: the exact scores of the mixture (AnalyticMixture).")

FIG3_LEARNED = Baseline(
    name="ncsn_fig3_learned", paper="Song & Ermon 2019 (NCSN)", where="Fig. 3",
    dataset="0.8 N((5,5), I) + 0.2 N((-5,-5), I)", experiment=ncsn_toy_learned,
    config="configs/ncsn/toy_mixture.py",
    metrics=(
        Metric("annealed_share", 0.8, (0.72, 0.86),
               "a learned score adds its own error to the exact-score spread "
               "(0.785 ± 0.03), so the band is twice as wide",
               "as ncsn_fig3_exact, with the score of an MLP trained by denoising "
               "score matching on the mixture (σ 1 -> 20, 10 levels); mean of 5 seeds."),
        Metric("plain_share", 0.5, (0.42, 0.58),
               "plain Langevin with the learned score at σ = 1 keeps the initial share",
               "1000 plain Langevin steps (ε = 0.1) with the learned score at the "
               "smallest level; mean of 5 seeds."),
    ),
    tiers={"cpu": Budget({"seeds": 5}, 1, CPU)})

# The RefineNet against the U-Net on digits: one budget for both networks (the shared
# overrides), the U-Net's config and size under "unet"; annealed Langevin as the configs
# sample (10 levels x 100 steps); 297 samples in one compiled call.
DIGITS_BUDGET = {
    "training.num_train_steps": 2000, "training.batch_size": 32, "training.steps_per_call": 1,
    "training.log_every": 500, "training.checkpoint_every": 1000, "training.sample_every": 0,
    "eval.classifier_fid.num_samples": 297, "eval.classifier_fid.batch_size": 297,
    "unet": {"config": "configs/ncsn/digits.py", "model.ch": 32, "model.ch_mult": (1, 2),
             "model.num_res_blocks": 1, "model.attn_resolutions": ()},
}
DIGITS_PROTOCOL = (common.CLASSIFIER_PROTOCOL + " Annealed Langevin as the configs sample "
                   "(σ 1 -> 0.01, 10 levels x 100 steps, ε = 2e-5, from U[0, 1]); "
                   "both networks trained with one budget.")

DIGITS_REFINENET = Baseline(
    name="ncsn_digits_refinenet", paper="Song & Ermon 2019 (NCSN)",
    where="Figs. 4-5 (MNIST: intermediate and uncurated samples)", dataset="digits 8x8",
    experiment=ncsn_digits_refinenet, config="configs/ncsn/digits_refinenet.py",
    metrics=(
        Metric("cfid_refinenet_over_unet", "samples only (no MNIST number)", (0.5, 1.5),
               "the paper shows MNIST samples and no number; what we check is that its "
               "network samples digits as well as the U-Net of the same budget, within "
               "the seed spread: 0.71 (training seed 0; sampling seeds 0-2: 0.71, 0.71, "
               "0.83) and 1.03 (training seed 1), so between half and 1.5 times",
               DIGITS_PROTOCOL + " cfid(RefineNet) / cfid(U-Net)."),
        Metric("confident_refinenet_over_real", "samples only (no MNIST number)",
               (0.4, 1.31),
               "Fig. 5's samples are recognisable digits; ours are confidently classified "
               "0.50-0.66 times as often as real test digits (training seeds 0-1, "
               "sampling seeds 0-2), against 0.14 after 20 training steps (a 40-sample "
               "smoke run) and below 0.4 for noise; the upper end allows every sample "
               "confident (1 / 0.768)",
               DIGITS_PROTOCOL + " The RefineNet's share of samples the calibrated "
               "classifier labels with confidence >= 0.9, over the same share of the "
               "297 real test digits."),
    ),
    tiers={"cpu": Budget(DIGITS_BUDGET, 15, CPU)},
    note="8x8 digits stand in for MNIST, NCSN's RefineNet at ngf 16 (518,817 parameters) "
         "for MNIST's ngf 64; the U-Net is the small digits U-Net (651,041) of "
         "configs/ncsn/digits.py. Both train 2,000 steps of 32 with NCSN's recipe; "
         "the training seed moves both cfids by up to 45% (U-Net 395 vs 218).")

MNIST = generic.gpu_recipe("ncsn_mnist", "Song & Ermon 2019 (NCSN recipe)",
                           "configs/ncsn/mnist.py", "MNIST", None,
                           {"sampling.n_steps_each": 20})

CIFAR10 = Baseline(
    name="ncsn_cifar10", paper="Song & Ermon 2019 (NCSN)", where="Table 1",
    dataset="CIFAR-10", experiment=generic.train_evaluate, config="configs/ncsn/cifar10.py",
    evaluators=("fid",),
    metrics=(Metric("fid", 25.32, (23.8, 26.9),
                    "the paper's own network (CondRefineNetDilated); ±6% for the spread of "
                    "training seeds and the Inception port (TF vs pytorch-fid weights)",
                    "FID of 50,000 samples (annealed Langevin, 100 steps per level, ε = 2e-5, "
                    "from U[0, 1]) vs the training set."),),
    tiers={"paper": Budget({"eval.fid.num_samples": 50_000}, 1200, GPU, runnable_here=False)},
    note="The paper's RefineNet (model.name='ncsn'); needs full CIFAR-10 and the Inception "
         "weights.")

"""The experiments behind the registry's baselines: each trains (resuming) and measures.

An experiment is ``fn(baseline, budget, workdir, seed) -> Outcome``: the measured value of
each of the baseline's metrics (claims measure 1.0 when they hold, 0.0 when not), the
pictures it drew (PNG files in ``workdir``) and details for results.json.
"""

import dataclasses
import hashlib
import importlib.util
import json
import math
import os
from typing import Any, Callable, Dict, List, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from diffusion import api, families, samplers
from diffusion import config as C
from diffusion.config import checks
from diffusion.errors import ConfigError
from diffusion.io import atomic
from diffusion.io import images as grids
from diffusion.evals import metrics as evaluation
from diffusion import evals as evaluators
from diffusion.io import workdir as runs
from diffusion.core import schedules
from diffusion.data import make_source, toy
from diffusion.models.analytic import AnalyticMixture
from diffusion.sweeps.grid import apply_overrides
from diffusion.train.loop import PENDING_STOP, Interrupted, train

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass
class Outcome:
  measured: Dict[str, float]
  pictures: List[str] = dataclasses.field(default_factory=list)
  details: Dict[str, Any] = dataclasses.field(default_factory=dict)


def load_config(path: str, overrides: Optional[Dict[str, Any]] = None) -> ml_collections.ConfigDict:
  """A config file's get_config() (path relative to the repository) with dotted overrides."""
  spec = importlib.util.spec_from_file_location("reproduce_config", os.path.join(REPO, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  return apply_overrides(config, overrides or {})


def check_stop() -> None:
  """Interrupted when a signal came (the reproduction's handler is ``loop.interrupt``),
  even one whose KeyboardInterrupt a library swallowed: checked between phases."""
  if PENDING_STOP:
    raise Interrupted(f"{PENDING_STOP[0]} received")


def train_and_restore(config, workdir: str):
  """Trains (or resumes, or finds finished) the run; returns (family, EMA params, step)."""
  check_stop()
  final = train(config, workdir, progress=False)
  if final.get("interrupted"):   # an unfinished model is no result
    raise Interrupted(f"{final['interrupted']} stopped training at step {final['step']} "
                      "(checkpoint saved)")
  family = families.make_family(config)
  params, step = runs.restore_ema_params(workdir, family)
  return family, params, step


def evaluate(config, params, step: int, workdir: str, names, seed: int = 0) -> Dict[str, float]:
  """Runs the named evaluators of ``config`` on EMA params; merged eval/* metrics."""
  family = families.make_family(config)
  out = {}
  for ev in evaluators.make_evaluators(family, workdir, names, seed=seed):
    check_stop()
    out.update(ev.run(params, step))
  check_stop()
  return out


# ---------------------------------------------------------------------------
# NCSN Fig. 3: annealed vs plain Langevin on the two-mode mixture
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


def _plot_langevin(path: str, shares: Dict[str, Any], seeds: int, title: str) -> str:
  """NCSN Fig. 3's two panels: the points of the last seed (``shares["points"]``), each
  panel titled with that seed's share beside the mean ± standard error over ``seeds``
  seeds that the table reports (``shares[key]``, ``shares[key + "_se"]``)."""
  # matplotlib takes ~1.5 s to import; only the pictures need it.
  from diffusion import extras  # pylint: disable=import-outside-toplevel
  extras.require("matplotlib")  # one line naming the plots extra
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
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
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


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
  config = load_config(baseline.config, {k: v for k, v in budget.overrides.items()
                                         if k != "seeds"})
  family, params, _ = train_and_restore(config, os.path.join(workdir, "run"))
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
# DPM Table 1: the swiss roll's bound K
# ---------------------------------------------------------------------------


def dpm_swiss_roll(baseline, budget, workdir: str, seed: int = 0) -> Outcome:
  """DPM's bound K in bits per point on ``swiss_roll_unit`` (T = 40, learned mean and
  variance, trained on the bound): K = −(L_T + Σ L_t + L_0) of 10,000 fresh points, the
  t = 0 term a Gaussian density. Beside it: the data's exact log-likelihood (the
  t-integral of its density), which bounds K from above, and L_null = −log2(2πe)."""
  overrides = dict(budget.overrides)
  n = int(overrides.pop("num_points", 10_000))
  config = load_config(baseline.config, overrides)
  family, params, _ = train_and_restore(config, os.path.join(workdir, "run"))
  x = toy.swiss_roll_unit(jax.random.PRNGKey(10_000 + seed), n)
  terms = evaluation.calc_bpd(family.eps_fn(params), family.process, x,
                              jax.random.PRNGKey(seed), config.diffusion.var_type,
                              clip_x0=False, decoder="gaussian")
  k_bits = -2.0 * np.asarray(terms["total_bpd"], np.float64)          # bits/dim x 2 dims
  exact_bits = toy.swiss_roll_unit_log_density(np.asarray(x)) / math.log(2.0)
  l_null = -math.log2(2 * math.pi * math.e)
  measured = {"K_bits": float(k_bits.mean()), "K_minus_L_null": float(k_bits.mean() - l_null),
              "exact_log_likelihood_bits": float(exact_bits.mean()),
              "gap_to_exact_bits": float(exact_bits.mean() - k_bits.mean())}
  pic = _plot_roll(os.path.join(workdir, "dpm_fig1_swiss_roll.png"), family, params,
                   np.asarray(x[:2000]), seed)
  return Outcome(measured, [pic], {"K_se": float(k_bits.std(ddof=1) / math.sqrt(n)),
                                   "num_points": n, "L_null": l_null})


def _plot_roll(path: str, family, params, x0: np.ndarray, seed: int) -> str:
  """DPM Fig. 1: the forward trajectory (data -> noise) above the reverse one."""
  from diffusion import extras  # pylint: disable=import-outside-toplevel
  extras.require("matplotlib")  # one line naming the plots extra
  import matplotlib  # pylint: disable=import-outside-toplevel  # heavy, pictures only
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  p, T = family.process, family.process.num_timesteps
  noise = np.asarray(jax.random.normal(jax.random.PRNGKey(seed + 1), x0.shape))
  forward = [np.asarray(p.q_sample(jnp.asarray(x0), jnp.full((len(x0),), t, jnp.int32),
                                   jnp.asarray(noise))) for t in (0, T // 2 - 1, T - 1)]
  _, traj = api.sample(family.eps_fn(params), p, x0.shape, jax.random.PRNGKey(seed + 2),
                            family.config.sampling, x0_range=None, trajectory_every=T // 2)
  reverse = [np.asarray(traj[0]), np.asarray(traj[1]), np.asarray(traj[-1])]
  fig, axes = plt.subplots(2, 3, figsize=(9, 6), sharex=True, sharey=True)
  for ax, pts, title in zip(axes[0], forward, ("t = 0 (data)", f"t = {T // 2}", f"t = {T}")):
    ax.scatter(pts[:, 0], pts[:, 1], s=1)
    ax.set_title(f"forward q, {title}")
  for ax, pts, title in zip(axes[1], reverse, (f"t = {T}", f"t = {T // 2}", "t = 0")):
    ax.scatter(pts[:, 0], pts[:, 1], s=1, c="tab:orange")
    ax.set_title(f"reverse p, {title}")
  for ax in axes.flat:
    ax.set(xlim=(-3, 3), ylim=(-3, 3))
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


# ---------------------------------------------------------------------------
# NCSNv2 techniques 1-2 from the data
# ---------------------------------------------------------------------------


def ncsnv2_sigmas(baseline, budget, workdir: str, seed: int = 0) -> Outcome:
  """NCSNv2 technique 1 (σ₁ = the largest pairwise distance of the training set, [0, 1]
  pixels) and 2 (γ with C(γ, D) = the released configs' 0.567; L from σ₁/σ_L = γ^{L−1},
  σ_L = 0.01) computed from the data."""
  del workdir, seed
  config = load_config(baseline.config, budget.overrides)
  images = make_source(config.data).arrays["images"]
  x = images.reshape(len(images), -1).astype(np.float64) / 255.0
  sigma1 = schedules.max_pairwise_distance(x)
  gamma = schedules.ncsnv2_gamma(x.shape[1], overlap=0.567)
  levels = schedules.ncsnv2_num_levels(0.01, sigma1, gamma)
  return Outcome({"sigma_1": sigma1, "num_levels": float(levels)},
                 details={"gamma": gamma, "num_train": len(x), "dim": x.shape[1]})


# ---------------------------------------------------------------------------
# Training objectives on digits: DDPM Table 1 / Improved DDPM Table 1 orderings
# ---------------------------------------------------------------------------

OBJECTIVES = {
    "mse": {"diffusion.loss": "mse", "diffusion.var_type": "fixedlarge"},
    "hybrid": {"diffusion.loss": "hybrid", "diffusion.var_type": "learned_range",
               "model.out_channels": 2},
    "kl": {"diffusion.loss": "kl", "diffusion.var_type": "learned_range",
           "model.out_channels": 2},
}


def _with_sampling(config, **sampling) -> ml_collections.ConfigDict:
  """``config`` with ``sampling.<key>`` overrides (a protocol's sampler)."""
  return apply_overrides(config, {f"sampling.{k}": v for k, v in sampling.items()})


def _quality(config, params, step, workdir, seed) -> Dict[str, float]:
  """The classifier metric of ``config``'s eval.classifier_fid with its sampler."""
  return evaluate(config, params, step, workdir, ["classifier_fid"], seed)


def _measured_once(directory: str, what: str, config, step: int, seed: int,
                   measure: Callable[[], Dict[str, float]]) -> Dict[str, float]:
  """``measure()`` of ``config`` at ``step``, kept as ``directory/<what>_<step>_seed<seed>_
  <digest>.json`` so that a rerun after an interruption skips the evaluations already
  done. The digest is of the resolved config, sampler included: a changed protocol is
  measured afresh, never read from an older file."""
  digest = hashlib.sha256(runs.config_json(config).encode()).hexdigest()[:12]
  path = os.path.join(directory, f"{what}_{step}_seed{seed}_{digest}.json")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  row = measure()
  atomic.write_json(path, row)
  return row


def digits_objectives(baseline, budget, workdir: str, seed: int = 0) -> Outcome:
  """One network and budget, three objectives (L_simple, hybrid, the bound): bits/dim on
  the test digits; the classifier metric of ancestral samples over all T steps (the
  protocol of DDPM's and Improved DDPM's Table 2) and of the config's respaced
  100-step chain (Improved DDPM Fig. 8); a sample grid per objective
  (``samples_<objective>.png``). Each evaluation is kept in the objective's folder, so
  a rerun after an interruption resumes where it stopped."""
  rows, pictures = {}, []
  for name, change in OBJECTIVES.items():
    config = load_config(baseline.config, dict(budget.overrides, **change))
    run_dir = os.path.join(workdir, name)
    family, params, step = train_and_restore(config, run_dir)

    full_chain = _with_sampling(config, method="ancestral", num_steps=0)
    bpd = _measured_once(run_dir, "bpd", config, step, seed, lambda: evaluate(
        config, params, step, run_dir, ["bpd"], seed))
    full = _measured_once(run_dir, "quality_full", full_chain, step, seed, lambda: _quality(
        full_chain, params, step, run_dir, seed))
    respaced = _measured_once(run_dir, "quality_respaced", config, step, seed, lambda: _quality(
        config, params, step, run_dir, seed))
    rows[name] = {"bpd": bpd["eval/bpd"], "bpd_se": bpd["eval/bpd_se"],
                  "cfid": full["eval/cfid"], "confident": full["eval/confident"],
                  "cfid_respaced": respaced["eval/cfid"],
                  "confident_respaced": respaced["eval/confident"]}
    samples = np.asarray(family.sample_fn(64)(params, jax.random.PRNGKey(seed)))
    if runs.save_samples(workdir, f"samples_{name}", samples,
                         family.to_uint8(samples)) is not None:
      pictures.append(os.path.join(workdir, f"samples_{name}.png"))
  b = {k: v["bpd"] for k, v in rows.items()}
  c = {k: v["cfid"] for k, v in rows.items()}
  r = {k: v["cfid_respaced"] for k, v in rows.items()}
  measured = {"bpd_mse": b["mse"], "bpd_hybrid": b["hybrid"], "bpd_kl": b["kl"],
              "bpd_ordering": float(b["mse"] > b["hybrid"] > b["kl"]),
              "cfid_mse": c["mse"], "cfid_hybrid": c["hybrid"], "cfid_kl": c["kl"],
              "vlb_samples_worst": c["kl"] / min(c["mse"], c["hybrid"]),
              "simple_vs_hybrid_quality": c["mse"] / c["hybrid"],
              "cfid_respaced_mse": r["mse"], "cfid_respaced_hybrid": r["hybrid"],
              "cfid_respaced_kl": r["kl"]}
  return Outcome(measured, pictures, details=rows)


# ---------------------------------------------------------------------------
# DDIM Table 1's pattern: quality against steps S for eta in {0, 0.5, 1}
# ---------------------------------------------------------------------------

DDIM_STEPS = (10, 20, 50, 100)
DDIM_ETAS = (0.0, 0.5, 1.0)


def ddim_steps(baseline, budget, workdir: str, seed: int = 0) -> Outcome:
  """One DDPM (L_simple) on digits; the classifier metric of DDIM samples for every
  (S, η). Claims: η = 0 is best at S = 10, and the gap to η = 1 closes by S = 100."""
  config = load_config(baseline.config, budget.overrides)
  _, params, step = train_and_restore(config, os.path.join(workdir, "run"))
  table = {}
  for eta in DDIM_ETAS:
    for s in DDIM_STEPS:
      ddim = _with_sampling(config, method="ddim", num_steps=s, eta=eta)
      row = _measured_once(workdir, f"ddim_eta{eta:g}_S{s}", ddim, step, seed, lambda: _quality(
          ddim, params, step, os.path.join(workdir, "run"), seed))
      table[(eta, s)] = row["eval/cfid"]
  gap10 = table[(1.0, 10)] - table[(0.0, 10)]
  gap100 = table[(1.0, 100)] - table[(0.0, 100)]
  measured = {f"cfid_eta{eta:g}_S{s}": v for (eta, s), v in table.items()}
  measured["eta0_best_at_S10"] = float(table[(0.0, 10)] <= min(table[(0.5, 10)],
                                                               table[(1.0, 10)]))
  measured["gap_closes_by_S100"] = float(gap100 < 0.5 * gap10)
  pic = _plot_ddim(os.path.join(workdir, "ddim_steps.png"), table,
                   config.eval.classifier_fid.num_samples, seed)
  return Outcome(measured, [pic], {"gap_S10": gap10, "gap_S100": gap100})


def _plot_ddim(path: str, table, num_samples: int, seed: int) -> str:
  """The table's cfid of every (η, S): one sample set of ``num_samples`` per point, drawn
  with sampling seed ``seed`` (the numbers are the table's, not a mean over seeds)."""
  from diffusion import extras  # pylint: disable=import-outside-toplevel
  extras.require("matplotlib")  # one line naming the plots extra
  import matplotlib  # pylint: disable=import-outside-toplevel  # heavy, pictures only
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, ax = plt.subplots(figsize=(5.5, 4))
  for eta in DDIM_ETAS:
    ax.plot(DDIM_STEPS, [table[(eta, s)] for s in DDIM_STEPS], marker="o", label=f"η = {eta:g}")
  ax.set(xscale="log", xlabel="sampling steps S", ylabel="classifier Fréchet distance",
         title=f"DDIM Table 1's pattern on digits\n{num_samples} samples per point, "
               f"sampling seed {seed} (the table's numbers)")
  ax.title.set_fontsize(10)
  ax.set_xticks(DDIM_STEPS, [str(s) for s in DDIM_STEPS])
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


# ---------------------------------------------------------------------------
# NCSN Figs. 4-5 on digits: NCSN's RefineNet beside the U-Net at the same budget
# ---------------------------------------------------------------------------

NCSN_NETWORKS = {"refinenet": "NCSN RefineNet", "unet": "U-Net"}
GRID_SAMPLES = 100     # the uncurated grid: the first 100 of the scored samples, 10 x 10
LANGEVIN_CHAINS = 10   # columns of the intermediate-samples figure


def _ncsn_configs(baseline, budget) -> Dict[str, ml_collections.ConfigDict]:
  """The RefineNet (``baseline.config``) and U-Net (``budget.overrides["unet"]["config"]``)
  configs with the tier's shared overrides, the U-Net's own model overrides on top.

  Raises:
    ConfigError: the two differ outside ``model`` (then they would not share one budget).
  """
  overrides = dict(budget.overrides)
  unet = dict(overrides.pop("unet"))
  configs = {"refinenet": load_config(baseline.config, overrides),
             "unet": load_config(unet.pop("config"), dict(overrides, **unet))}
  resolved = {k: C.parse_config(c).to_dict() for k, c in configs.items()}
  for key, section in resolved["unet"].items():
    if key != "model" and section != resolved["refinenet"][key]:
      raise ConfigError(f"{baseline.name}: the RefineNet and U-Net configs differ in "
                        f"{key!r}; the comparison needs one budget (they may differ in "
                        "'model' only).")
  return configs


def _samples_once(directory: str, what: str, config, step: int, seed: int,
                  draw: Callable[[], np.ndarray]) -> np.ndarray:
  """``draw()`` (uint8 samples) kept as ``directory/<what>_<step>_seed<seed>_<digest>.npy``,
  as :func:`_measured_once` keeps a measurement: a rerun scores and draws the pictures
  from the same samples without sampling again."""
  digest = hashlib.sha256(runs.config_json(config).encode()).hexdigest()[:12]
  path = os.path.join(directory, f"{what}_{step}_seed{seed}_{digest}.npy")
  if os.path.exists(path):
    return np.load(path)
  images = np.asarray(draw())
  atomic.write_with(path, lambda f: np.save(f, images), binary=True)
  return images


def ncsn_digits_refinenet(baseline, budget, workdir: str, seed: int = 0) -> Outcome:
  """NCSN's MNIST figures on the 8x8 digits: NCSN's RefineNet and the U-Net trained with
  one budget (NCSN's recipe, same steps, batch, lr, σ ladder and annealed Langevin);
  the classifier metric of each network's samples, and the pictures of NCSN Fig. 5
  (uncurated samples, both networks) and Fig. 4 (the RefineNet's intermediate samples,
  one row per σ level). Each network trains in ``workdir/<network>``; its scored samples
  are kept there, so a rerun after an interruption resumes where it stopped."""
  configs = _ncsn_configs(baseline, budget)
  rows, pictures = {}, []
  for name, label in NCSN_NETWORKS.items():
    config, run_dir = configs[name], os.path.join(workdir, name)
    family, params, step = train_and_restore(config, run_dir)
    (ev,) = evaluators.make_evaluators(family, run_dir, ["classifier_fid"], seed=seed)
    # The evaluator's own draw (its key), kept, then scored: the protocol of _quality.
    images = _samples_once(run_dir, "quality_samples", config, step, seed,
                           lambda: ev.samples(params, step, None, salt=5))
    check_stop()
    quality = ev.run(params, step, images)
    rows[name] = {k[len("eval/"):]: v for k, v in quality.items()}
    rows[name].update(step=step, params=int(sum(np.size(p) for p in
                                                jax.tree_util.tree_leaves(params))))
    pictures.append(_plot_digits(
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
  return _plot_digits(path, images, f"NCSN Fig. 4 on digits: {label}\nannealed Langevin, "
                      f"{settings.n_steps_each} steps per level, ε = {settings.step_size:g}"
                      f"\n{LANGEVIN_CHAINS} chains (columns, not the scored samples); each "
                      "row is the state after that level", ncols=LANGEVIN_CHAINS,
                      row_labels=labels)


def _plot_digits(path: str, images: np.ndarray, title: str, ncols: Optional[int] = None,
                 row_labels: Optional[List[str]] = None) -> str:
  """uint8 images [N, H, W, 1] as one titled grid (``ncols`` per row, default √N), rows
  optionally labelled."""
  from diffusion import extras  # pylint: disable=import-outside-toplevel
  extras.require("matplotlib")  # one line naming the plots extra
  import matplotlib  # pylint: disable=import-outside-toplevel  # heavy, pictures only
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  ncols = ncols or int(math.ceil(math.sqrt(len(images))))
  grid = grids.make_grid(images, ncols)[..., 0]
  rows, tile = -(-len(images) // ncols), images.shape[1] + 1   # make_grid's 1-pixel pad
  fig, ax = plt.subplots(figsize=(0.55 * ncols + (1.3 if row_labels else 0.3),
                                  0.55 * rows + 0.9))
  ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
  ax.set_xticks([])
  if row_labels:
    ax.set_yticks([1 + tile * i + images.shape[1] / 2 - 0.5 for i in range(rows)],
                  row_labels[:rows], fontsize=8)
  else:
    ax.set_yticks([])
  ax.set_title(title, fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


# ---------------------------------------------------------------------------
# Train and evaluate a config (GPU and paper tiers, the VAE)
# ---------------------------------------------------------------------------


def train_evaluate(baseline, budget, workdir: str, seed: int = 0) -> Outcome:
  """Trains the baseline's config with the tier's overrides, then runs the evaluators
  its metrics name (``eval/<metric>`` of bpd, fid, classifier_fid, elbo) and writes a
  sample grid."""
  config = load_config(baseline.config, budget.overrides)
  family, params, step = train_and_restore(config, os.path.join(workdir, "run"))
  metrics = evaluate(config, params, step, os.path.join(workdir, "run"), baseline.evaluators,
                     seed)
  samples = np.asarray(family.sample_fn(64)(params, jax.random.PRNGKey(seed)))
  grid = runs.save_samples(workdir, "samples", samples, family.to_uint8(samples))
  measured = {m.name: metrics.get(f"eval/{m.name}", float("nan")) for m in baseline.metrics}
  pictures = [os.path.join(workdir, "samples.png")] if grid is not None else []
  return Outcome(measured, pictures, {"metrics": metrics, "step": step})


# ---------------------------------------------------------------------------
# The papers' released weights (python -m diffusion.pretrained import): evaluate only
# ---------------------------------------------------------------------------


def _imported_run(baseline, weights: str) -> str:
  """The imported run ``weights`` (its config.json and checkpoint), or one line saying
  how to make it."""
  make = ("import the release first: python -m diffusion.pretrained import <the release> "
          "--workdir=DIR (README: Pretrained weights), then pass --weights=DIR")
  if not weights:
    raise ConfigError(f"{baseline.name} evaluates a released model: {make}.")
  if not os.path.isfile(os.path.join(weights, "config.json")):
    raise ConfigError(f"--weights={weights} holds no run (no config.json); {make}.")
  return weights


def evaluate_weights(baseline, budget, workdir: str, seed: int = 0, weights: str = "",
                     inception_weights: str = "") -> Outcome:
  """Evaluates an imported release with each protocol of the entry; trains nothing.

  ``budget.overrides["protocols"]``: {protocol: {"eval": evaluator, "sampling": {...},
  "metrics": {metric: eval key}, "<section.field>": value ...}}: one evaluator run per
  protocol (e.g. 50,000 samples give FID and IS), under the protocol's sampling settings
  and overrides. The inputs (the imported run, the FID Inception weights, the reference
  data) are checked before anything is sampled.
  """
  run_dir = _imported_run(baseline, weights)
  base = runs.load_config(run_dir)
  protocols = budget.overrides["protocols"]
  uses_fid = any(p["eval"] == "fid" for p in protocols.values())
  if uses_fid and not (inception_weights and os.path.isfile(inception_weights)):
    raise ConfigError(f"{baseline.name} computes FID / IS: pass --inception_weights=FILE, the "
                      "converted pt_inception-2015-12-05 weights (python -m diffusion.evals."
                      "inception_convert; README: Sampling and evaluation).")
  jobs = []
  for name, protocol in protocols.items():   # build everything first: fail before sampling
    changes = {f"sampling.{k}": v for k, v in protocol.get("sampling", {}).items()}
    changes.update({k: v for k, v in protocol.items() if "." in k})
    if uses_fid:
      changes["eval.fid.inception_weights"] = inception_weights
    config = checks.validate(apply_overrides(base, changes))
    family = families.make_family(config)
    (ev,) = evaluators.make_evaluators(family, run_dir, [protocol["eval"]], seed=seed,
                                       output_dir=workdir)
    jobs.append((name, protocol, family, ev))
  if uses_fid:   # the training split the FID statistics need (read once, cached in the run)
    make_source(base.data, split=base.data.split)
  # Protocols change only sampling and evaluation: one restore serves them all.
  params, step = runs.restore_ema_params(run_dir, jobs[0][2])
  measured, details = {}, {}
  for name, protocol, family, ev in jobs:
    metrics = ev.run(params, step)
    for metric, key in protocol["metrics"].items():
      measured[metric] = float(metrics.get(f"eval/{key}", float("nan")))
    details[name] = {"protocol": protocol, "metrics": metrics, "summary": ev.summary()}
    print(f"{name}: {ev.summary()}", flush=True)
  return Outcome(measured, [], details)


EXPERIMENTS: Dict[str, Callable[..., Outcome]] = {
    "ncsn_toy_exact": ncsn_toy_exact, "ncsn_toy_learned": ncsn_toy_learned,
    "ncsnv2_sigmas": ncsnv2_sigmas, "digits_objectives": digits_objectives,
    "dpm_swiss_roll": dpm_swiss_roll,
    "ddim_steps": ddim_steps, "ncsn_digits_refinenet": ncsn_digits_refinenet,
    "train_evaluate": train_evaluate,
    "evaluate_weights": evaluate_weights,
}

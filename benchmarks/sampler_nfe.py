"""Quality against network evaluations (NFE) for every sampler (issues 22, 33).

Data: the 2-D Gaussian mixture of tests/samplers/test_init.py (weights 0.7/0.3,
means (2, 0.5)/(−2, −1), stds (0.3, 0.4)/(0.5, 0.2)) with its exact ε
(models.analytic), on DDPM's linear VP schedule (T = 1000) and a geometric VE
ladder (σ 0.01 -> 50, T = 1000). Metrics, both exact references:
  ED  energy distance (Székely) × 1000 between 4096 samples and 4096 exact draws
      (the floor row: two independent exact draws);
  ΔLL mean true log-density of the samples minus that of exact draws (nats;
      0 is ideal, negative = samples in low-density places).
Every cell starts from one shared x_T (the stochastic samplers' noise from one key), so
the cells are paired; the reference rows are DDIM with 100 and 1,000 steps.
NFE per sampler: ancestral, ddim, dpm_solver (2M, 3M, SDE), ipndm, unipc, deis: one per
step (num_steps = NFE); heun N σ steps = 2N − 1 (N = (NFE + 1)/2, so an even column gets
one evaluation less); pc L levels with 1 corrector = 2L − 1; ode: adaptive, rows by
tolerance (its NFE = ODE-field evaluations, each 2 network calls under ``round``). The
samplers that read ``sampling.sigma_policy`` have a row per policy (``/round``,
``/interp``).

  python benchmarks/sampler_nfe.py [--kinds vp,ve] [--n 4096] [--nfes 5,6,8,10,20,50]

With ``--digits=WORKDIR`` the same grid runs on a trained digits run instead (e.g. the
quickstart's): each cell is the share of N samples (default 512) that the calibrated
digits classifier labels with confidence >= 0.9, and the classifier Fréchet distance
(cfid) against the training split, beside the real test digits' figures (the floor row).
The samplers keep the run's image settings (x̂₀ clipped to the data range) and all start
from the same x_T, so the cells are paired. ``--spread`` adds DDIM-100 and the 10-NFE
samplers from three x_T draws (the judge's spread); ``--clipping`` the samplers with
``clip_x0`` on and off.

  python benchmarks/sampler_nfe.py --digits=runs/digits [--n 512] [--spread] [--clipping]
"""

import argparse
import platform
import time

import jax
import numpy as np

import diffusion
from diffusion.evals.classifier_fid import ClassifierFrechet
from diffusion.models.analytic import AnalyticMixture
from diffusion.samplers import ode

W = np.array([0.7, 0.3])
MU = np.array([[2.0, 0.5], [-2.0, -1.0]])
SD = np.array([[0.3, 0.4], [0.5, 0.2]])
MIX = AnalyticMixture.diagonal(tuple(W), MU, SD)
NFES = (5, 6, 8, 10, 20, 50)
POLICY_SAMPLERS = (("heun", dict(method="heun")),
                   ("dpm_solver_2m", dict(method="dpm_solver")),
                   ("dpm_solver_3m", dict(method="dpm_solver", dpm_order=3)),
                   ("dpm_solver_sde", dict(method="dpm_solver", dpm_sde=True)),
                   ("ipndm", dict(method="ipndm")), ("unipc", dict(method="unipc")),
                   ("deis", dict(method="deis")))
REFERENCES = (("ddim 100", dict(method="ddim", num_steps=100)),
              ("ddim 1000", dict(method="ddim", num_steps=0)))


def exact_draws(n, seed):
  rng = np.random.default_rng(seed)
  k = (rng.random(n) < W[1]).astype(int)
  return MU[k] + SD[k] * rng.normal(size=(n, 2))


def energy_distance(x, y):
  def mean_dist(a, b):
    return np.mean(np.sqrt(np.sum((a[:, None] - b[None]) ** 2, -1)))
  return 2 * mean_dist(x, y) - mean_dist(x, x) - mean_dist(y, y)


def log_density(x):
  return np.asarray(MIX.apply({}, np.asarray(x, np.float32), 1.0, 0.0, method="log_prob"))


def _steps_for(settings, nfe):
  """num_steps reaching at most ``nfe`` network evaluations."""
  two_per_step = settings["method"] in ("heun", "pc")
  return (nfe + 1) // 2 if two_per_step else nfe


def configs(nfe, clip_x0=False, policies=("round", "interpolate")):
  """(row name, settings) of every sampler at about ``nfe`` network evaluations."""
  out = [("ancestral", dict(method="ancestral", num_steps=nfe, clip_x0=clip_x0)),
         ("ddim", dict(method="ddim", num_steps=nfe, clip_x0=clip_x0))]
  if nfe >= 3:
    out.append(("pc", dict(method="pc", num_steps=(nfe + 1) // 2)))
  for name, kw in POLICY_SAMPLERS:
    order = kw.get("dpm_order", 4 if name == "ipndm" else 3 if name in ("unipc", "deis") else 1)
    if _steps_for(kw, nfe) < max(order, 2 if name == "heun" else 1):
      continue
    for policy in policies:
      out.append((f"{name}/{policy[:6]}", dict(kw, num_steps=_steps_for(kw, nfe),
                                               sigma_policy=policy, clip_x0=clip_x0)))
  return out


def ode_settings(tol: float) -> dict:
  """The adaptive ODE sampler's options at rtol = atol = ``tol``."""
  return dict(rtol=tol, atol=tol)


def header(n) -> str:
  return (f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, "
          f"{platform.processor() or platform.machine()}, jax {jax.__version__} "
          f"{jax.devices()[0].platform}, N = {n}")


def _table(rows, nfes, cell) -> None:
  print("| sampler | " + " | ".join(f"{n}" for n in nfes) + " |")
  print("|---|" + "---|" * len(nfes))
  for name, r in rows.items():
    cells = [cell(r[m]) if m in r else "–" for m in nfes]
    print(f"| {name} | " + " | ".join(cells) + " |")


def digits(workdir: str, n: int, nfes=NFES, spread: bool = False,
           clipping: bool = False) -> None:
  """The NFE grid on a trained digits run, judged by the calibrated digits classifier."""
  run = diffusion.load(workdir)
  judge = ClassifierFrechet(run.config.eval.classifier_fid.replace(num_samples=n), run.family)
  eps_fn, process = run.family.eps_fn(run.params), run.family.process
  shape = (n,) + tuple(run.family.example_shape)
  # One x_T for every cell: which x_T is drawn moves the judge by more than the samplers
  # differ (two draws of 256: 64% and 58% confident with the same sampler), so the cells
  # are paired; the stochastic samplers' noise comes from key 1.
  inits = [process.prior_sample(jax.random.PRNGKey(seed), shape) for seed in range(3)]

  def score(settings, seed=0, clip=True):
    start = time.time()
    x = diffusion.sample(eps_fn, process, shape, jax.random.PRNGKey(1),
                         dict(settings, batch_size=n), init=inits[seed],
                         x0_range=run.family.x_range if clip else None)
    r = judge.score(run.to_uint8(np.asarray(x)))
    return r["eval/confident"], r["eval/cfid"], time.time() - start

  print(header(n) + f"; {workdir} at step {run.step}")
  rows = {}
  for name, kw in REFERENCES[:1]:      # DDIM-100 (1,000 steps of the U-Net: hours here)
    rows[name] = {nfes[-1]: score(dict(kw, clip_x0=True))}
    print(f"  {name}: {rows[name][nfes[-1]][0]:.1%} / {rows[name][nfes[-1]][1]:.1f}", flush=True)
  for nfe in nfes:
    for name, kw in configs(nfe, clip_x0=True):
      rows.setdefault(name, {})[nfe] = score(kw)
      print(f"  {name} NFE {nfe}: {rows[name][nfe][0]:.1%} / {rows[name][nfe][1]:.1f} "
            f"({rows[name][nfe][2]:.0f} s)", flush=True)
  real = judge.last
  print(f"\ndigits: confident share / cfid at NFE (references in the last column); real "
        f"test digits: {real['confident_real']:.1%} / floor {real['cfid_floor']:.1f}")
  _table(rows, nfes, lambda c: f"{c[0]:.1%} / {c[1]:.1f}")
  for policy in ("round", "interpolate"):
    for tol in (1e-2, 1e-3, 1e-5):
      x, nfe = ode.sample_with_nfe(eps_fn, process, shape, jax.random.PRNGKey(1), inits[0],
                                   run.family.x_range, sigma_policy=policy, **ode_settings(tol))
      r = judge.score(run.to_uint8(np.asarray(x)))
      calls = 2 * int(nfe) if policy == "round" else int(nfe)
      print(f"  ode/{policy} {tol:g}: NFE {int(nfe)} (network calls {calls}), "
            f"{r['eval/confident']:.1%} / {r['eval/cfid']:.1f}", flush=True)
  if spread:
    print("\nThe judge's spread: three x_T draws (seeds 0, 1, 2)")
    best = [("ddim 100", dict(method="ddim", num_steps=100, clip_x0=True))] + \
        [(name, kw) for name, kw in configs(10, clip_x0=True) if "/" in name]
    for name, kw in best:
      cells = [score(kw, seed) for seed in range(3)]
      print(f"| {name} (10 NFE unless named) | " + " | ".join(
          f"{c[0]:.1%} / {c[1]:.1f}" for c in cells) + " |", flush=True)
  if clipping:
    print("\nx̂₀ clipping: the same x_T, clip_x0 on / off")
    cases = [("ddim 100", dict(method="ddim", num_steps=100)),
             ("heun 18 (35 NFE)", dict(method="heun", num_steps=18)),
             ("heun 18 (35 NFE) /interp", dict(method="heun", num_steps=18,
                                                sigma_policy="interpolate")),
             ("dpm_solver 2M 20", dict(method="dpm_solver", num_steps=20)),
             ("ipndm 10", dict(method="ipndm", num_steps=10)),
             ("unipc 10", dict(method="unipc", num_steps=10)),
             ("deis 10", dict(method="deis", num_steps=10))]
    for name, kw in cases:
      on, off = score(kw), score(kw, clip=False)
      print(f"| {name} | {on[0]:.1%} / {on[1]:.1f} | {off[0]:.1%} / {off[1]:.1f} |", flush=True)
    for clip in (True, False):
      x, nfe = ode.sample_with_nfe(eps_fn, process, shape, jax.random.PRNGKey(1), inits[0],
                                   run.family.x_range if clip else None, **ode_settings(1e-3))
      r = judge.score(run.to_uint8(np.asarray(x)))
      print(f"  ode 1e-3 clip={clip}: NFE {int(nfe)}, {r['eval/confident']:.1%} / "
            f"{r['eval/cfid']:.1f}", flush=True)


def toy(kinds, n: int, nfes=NFES) -> None:
  """The NFE grid on the exact-score toy mixture (VP and VE)."""
  procs = dict(
      vp=diffusion.make_process(dict(variant="ddpm", schedule="linear", num_timesteps=1000)),
      ve=diffusion.make_process(dict(variant="ncsn", schedule="geometric", num_timesteps=1000,
                                     sigma_min=0.01, sigma_max=50.0)))
  ref = exact_draws(n, 0)
  ref_ll = log_density(ref).mean()
  floor = energy_distance(exact_draws(n, 1), ref)
  print(header(n) + f"; ED floor (exact vs exact) {1000 * floor:.2f}")
  for kind in kinds:
    p = procs[kind]
    init = p.prior_sample(jax.random.PRNGKey(0), (n, 2))

    def eps_fn(x, t, p=p):
      return MIX.apply({}, x, p.signal_scale(t), p.noise_std(t))

    def score(x):
      x = np.asarray(x, np.float64)
      return 1000 * energy_distance(x, ref), log_density(x).mean() - ref_ll

    def draw(kw):
      return diffusion.sample(eps_fn, p, (n, 2), jax.random.PRNGKey(2), kw, init=init,
                              x0_range=None)

    rows = {name: {nfes[-1]: score(draw(kw))} for name, kw in REFERENCES}
    for nfe in nfes:
      for name, kw in configs(nfe):
        rows.setdefault(name, {})[nfe] = score(draw(kw))
    print(f"\n{kind.upper()}: ED×1000 / ΔLL (nats) at NFE (references in the last column)")
    _table(rows, nfes, lambda c: f"{c[0]:.1f} / {c[1]:+.3f}")
    print(f"\n{kind.upper()} ode (adaptive tsit5): tolerance -> NFE, ED×1000 / ΔLL")
    for policy in ("round", "interpolate"):
      for tol in (1e-2, 1e-3, 1e-4, 1e-5):
        x, nfe = ode.sample_with_nfe(eps_fn, p, (n, 2), None, init, sigma_policy=policy,
                                     **ode_settings(tol))
        ed, dll = score(x)
        calls = 2 * int(nfe) if policy == "round" else int(nfe)
        print(f"  {policy} {tol:g}: ODE NFE {int(nfe)} (network calls {calls}), "
              f"{ed:.1f} / {dll:+.3f}", flush=True)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--kinds", default="vp,ve")
  ap.add_argument("--n", type=int, default=None, help="samples per cell (4096; digits: 512)")
  ap.add_argument("--digits", default="", help="a trained digits run's workdir")
  ap.add_argument("--nfes", default=",".join(map(str, NFES)), help="NFE columns")
  ap.add_argument("--spread", action="store_true", help="digits: three x_T draws at 10 NFE")
  ap.add_argument("--clipping", action="store_true", help="digits: clip_x0 on and off")
  args = ap.parse_args()
  nfes = tuple(int(v) for v in args.nfes.split(","))
  if args.digits:
    digits(args.digits, args.n or 512, nfes, args.spread, args.clipping)
    return
  toy(args.kinds.split(","), args.n or 4096, nfes)


if __name__ == "__main__":
  main()

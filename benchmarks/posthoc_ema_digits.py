"""Post-hoc EMA against separately trained EMA decays, on the digits U-Net (EDM2 §3).

  python benchmarks/posthoc_ema_digits.py --workdir=runs/posthoc_ema_digits \\
      [--steps=1000] [--judge_samples=512] [--std_rel=0.01,0.015,...,0.25] \\
      [--decay_std_rel=0.025,0.05,0.1,0.2] [--sampler=dpm_solver --sampler_steps=20]

Trains ``configs/ddpm/digits.py`` through ``train.py`` (a rerun resumes each finished run
instead of retraining it), every run ``--steps`` steps, no sample grids while training:

  posthoc   ONE run with ``training.phema_std_rel=(0.05, 0.1)`` (EDM2's pair; snapshots every
            64th of the run);
  decays    4 runs, one per ``training.ema_decay``: the decays whose constant-decay EMA has the
            σ_rel of ``--decay_std_rel`` after ``--steps`` updates
            (:func:`diffusion.train.phema.ema_decay_std_rel`, inverted by bisection and
            rounded to 5 decimals), i.e. spanning the range the post-hoc run reconstructs
            (at 1,000 steps: 0.96079, 0.9802, 0.99005, 0.99521 for σ_rel 0.025-0.2; the
            post-hoc run's 67 snapshots span σ_rel 0.005-0.28);

Then one judge for everything, ``eval.classifier_fid`` (the calibrated digits classifier),
on ``--judge_samples`` samples of one sampler from one x_T (sampling seed 0): each decay
run's own EMA (:func:`diffusion.generate.generate`) and the post-hoc run's EMA at every
``--std_rel`` (:func:`diffusion.sweeps.ema.ema_sweep`). The judge's spread: the best decay
run and the best post-hoc length again with sampling seeds 1 and 2 (max - min of the 3).

Prints a Markdown table (σ_rel or decay | source | cfid | training steps spent) and the
verdict: the post-hoc best against the separately trained best, within the spread or not;
with the command, machine and date. Everything lands under ``--workdir``. Cost at the
defaults: 5 x 1,000 training steps and 18 judged sample sets of 512; extrapolated from a
20-step run on 2 loaded cores (~3 steps/s, load 5): about 35 min there, about 15 min
on 2 quiet ones.

Note: every run uses training.seed 0, so the five runs follow the same raw-parameter
trajectory (the EMA never feeds back into training; CPU runs are deterministic): the
comparison isolates the post-hoc reconstruction and the profile shape (power function
against exponential), not training-seed noise.
"""

import argparse
import datetime
import json
import os
import platform
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from diffusion.generate import generate  # pylint: disable=wrong-import-position
from diffusion.sweeps.ema import ema_sweep  # pylint: disable=wrong-import-position
from diffusion.train import phema  # pylint: disable=wrong-import-position
from search_vs_grid import run  # pylint: disable=wrong-import-position  # the sibling script's runner

CONFIG = "configs/ddpm/digits.py"
TRACKED = "0.05,0.1"
JUDGE = "classifier_fid"
METRIC = "eval/cfid"


def floats(text):
  return [float(v) for v in text.split(",") if v.strip()]


def decay_for_std_rel(target: float, steps: int) -> float:
  """The constant EMA decay whose σ_rel after ``steps`` updates is ``target`` (bisection on
  :func:`phema.ema_decay_std_rel`, increasing in the decay), rounded to 5 decimals."""
  lo, hi = 0.0, 1.0 - 1e-9
  for _ in range(60):
    mid = 0.5 * (lo + hi)
    if phema.ema_decay_std_rel(mid, steps) < target:
      lo = mid
    else:
      hi = mid
  return round(0.5 * (lo + hi), 5)


def train(workdir, steps, extra, log):
  """One ``train.py`` run of ``--steps`` steps (a rerun resumes it); returns the wall
  seconds spent."""
  args = ["train.py", f"--config={CONFIG}", f"--workdir={workdir}", "--progress=false",
          f"--config.training.num_train_steps={steps}", "--config.training.sample_every=0",
          f"--config.training.checkpoint_every={steps}",
          f"--config.training.log_every={max(1, steps // 10)}",
          f"--config.optim.warmup_steps={min(200, steps // 5)}", *extra]
  return run(args, log)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--steps", type=int, default=1000, help="training steps of every run")
  parser.add_argument("--judge_samples", type=int, default=512)
  parser.add_argument("--std_rel", default="0.01,0.015,0.02,0.03,0.05,0.07,0.1,0.15,0.2,0.25",
                      help="post-hoc EMA lengths judged")
  parser.add_argument("--decay_std_rel", default="0.025,0.05,0.1,0.2",
                      help="σ_rel of the 4 separately trained constant EMA decays")
  parser.add_argument("--sampler", default="dpm_solver")
  parser.add_argument("--sampler_steps", type=int, default=20)
  args = parser.parse_args()
  wd = os.path.abspath(args.workdir)
  os.makedirs(wd, exist_ok=True)
  log = os.path.join(wd, "log.txt")
  t0 = time.time()
  decays = [decay_for_std_rel(s, args.steps) for s in floats(args.decay_std_rel)]

  # Training: one post-hoc run, then one run per decay (the same budget each).
  wall = {}
  posthoc_dir = os.path.join(wd, "posthoc")
  wall["posthoc"] = train(posthoc_dir, args.steps,
                          [f"--config.training.phema_std_rel={TRACKED}"], log)
  decay_dirs = {}
  for d in decays:
    decay_dirs[d] = os.path.join(wd, f"decay_{d:g}")
    wall[d] = train(decay_dirs[d], args.steps, [f"--config.training.ema_decay={d}"], log)
  print(f"trained 1 + {len(decays)} runs of {args.steps} steps: "
        f"{wall['posthoc']:.0f} s (post-hoc), "
        + ", ".join(f"{wall[d]:.0f} s" for d in decays) + " (decays)", flush=True)

  # Judging: the same sampler, sample count and x_T (seed 0) for every model.
  judge = dict(num_samples=args.judge_samples, evals=[JUDGE], sampler=args.sampler,
               steps=args.sampler_steps, progress=False)
  t_judge = time.time()
  rows = []
  for d in decays:
    res = generate(None, decay_dirs[d], seed=0, **judge)
    rows.append({"label": f"decay {d:g} (σ_rel {phema.ema_decay_std_rel(d, args.steps):.3g})",
                 "source": "trained separately", "cfid": res.scores[METRIC],
                 "steps": args.steps, "decay": d, "dir": decay_dirs[d]})
  sweep_out = os.path.join(wd, "posthoc", "ema_sweep_bench")
  ema_sweep(posthoc_dir, floats(args.std_rel), [JUDGE], seed=0, output=sweep_out,
            plots=False, num_samples=args.judge_samples, sampler=args.sampler,
            steps=args.sampler_steps, progress=False)
  with open(os.path.join(sweep_out, "ema_sweep.json"), encoding="utf-8") as f:
    ledger = json.load(f)
  for entry in sorted(ledger["lengths"].values(), key=lambda e: e["std_rel"]):
    rows.append({"label": f"σ_rel {entry['std_rel']:g}", "source": "post hoc, one run",
                 "cfid": entry["scores"][METRIC], "steps": args.steps,
                 "std_rel": entry["std_rel"], "step": entry["step"]})

  separate = min((r for r in rows if "decay" in r), key=lambda r: r["cfid"])
  posthoc = min((r for r in rows if "std_rel" in r), key=lambda r: r["cfid"])
  seeds = {"separate": [separate["cfid"]], "posthoc": [posthoc["cfid"]]}
  for s in (1, 2):
    seeds["separate"].append(generate(None, separate["dir"], seed=s, **judge).scores[METRIC])
    seeds["posthoc"].append(generate(None, posthoc_dir, seed=s, checkpoint_step=posthoc["step"],
                                     ema_std_rel=posthoc["std_rel"], **judge).scores[METRIC])
  judge_wall = time.time() - t_judge
  spread = max(np.ptp(seeds["separate"]), np.ptp(seeds["posthoc"]))
  gap = posthoc["cfid"] - separate["cfid"]

  print()
  print(f"`{' '.join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:])}` on "
        f"{platform.node()} ({os.cpu_count()} CPUs, {platform.processor() or platform.machine()}), "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"{CONFIG}, {args.steps} steps each, judge {JUDGE} on {args.judge_samples} "
        f"{args.sampler}-{args.sampler_steps} samples, x_T seed 0.")
  print()
  print("| σ_rel or decay | source | cfid | training steps spent |")
  print("|---|---|---:|---:|")
  for r in rows:
    mark = " **best**" if r is separate or r is posthoc else ""
    spent = (f"{r['steps']:,}" if "decay" in r
             else f"{args.steps:,} (shared by all {len(ledger['lengths'])} σ_rel)")
    print(f"| {r['label']}{mark} | {r['source']} | {r['cfid']:.2f} | {spent} |")
  print()
  print(f"Judge's spread (x_T seeds 0/1/2): {separate['label']}: "
        + " / ".join(f"{v:.2f}" for v in seeds["separate"])
        + f"; post-hoc {posthoc['label']}: " + " / ".join(f"{v:.2f}" for v in seeds["posthoc"])
        + f"; spread (the larger max - min) {spread:.2f}.")
  mean_sep, mean_ph = np.mean(seeds["separate"]), np.mean(seeds["posthoc"])
  verdict = "WITHIN" if gap <= spread else "NOT within"
  print(f"Verdict: post-hoc best ({posthoc['label']}, cfid {posthoc['cfid']:.2f}, "
        f"{args.steps:,} training steps) vs separately trained best ({separate['label']}, "
        f"cfid {separate['cfid']:.2f}, {len(decays) * args.steps:,} training steps for the 4): "
        f"gap {gap:+.2f}, {verdict} the judge's spread {spread:.2f} "
        f"(means over 3 seeds {mean_ph:.2f} vs {mean_sep:.2f}).")
  print(f"Wall time: training {sum(wall.values()):.0f} s (post-hoc run {wall['posthoc']:.0f} s), "
        f"judging {judge_wall:.0f} s, total {time.time() - t0:.0f} s.")


if __name__ == "__main__":
  main()

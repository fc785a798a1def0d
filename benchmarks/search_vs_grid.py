"""A search against the grid it replaces: the grid's best sample quality, and what the searches
find for their share of its training steps.

  python benchmarks/search_vs_grid.py --config=configs/ddpm/quickstart.py \\
      --workdir=runs/search_vs_grid [--steps=1000] [--trials=16] [--judge_samples=512]
  python benchmarks/search_vs_grid.py --config=configs/ddpm/toy_mixture.py --judge=heldout_loss \\
      --workdir=runs/search_vs_grid_toy --steps=900 --lr=1e-4,1e-2

Trains, through ``train.py`` (each phase resumes where a rerun finds it):

  grid    the 4 x 4 grid lr in {1e-3, 2e-3, 4e-3, 8e-3} x EMA decay in {0.99, 0.995, 0.998,
          0.999}, every point ``--steps`` steps (sequential: U-Nets on a CPU);
  asha    a search of ``--trials`` over the same ranges (lr log-uniform on [1e-3, 8e-3], the
          four EMA decays), quasi-random + ASHA (η = 3), judged by the default metric;
  tpe     the same with TPE + ASHA;
  tpe_cfid  with ``--judge=classifier_fid``: TPE + ASHA optimising the judge's own metric
          during training (``--metric=eval/cfid``, the evaluator every 100 steps on
          ``--judge_samples`` samples);

(every run logs the held-out loss every 100 steps, the search's metric), then judges each run
trained to the end with ``sample.py --eval=classifier_fid`` (``--judge_samples`` samples of the
config's sampler from one x_T: sampling seed 0 for every run; the grid's best point also with
seeds 1 and 2, the judge's spread). Prints the table of BENCHMARKS.md: training steps spent,
the best classifier Fréchet distance, and the pick by each sweep's own metric.
``--judge=heldout_loss`` (2-D sets, no classifier) judges each run by its last held-out loss
instead: the searches' own metric on one set of 1,024 (x0, t, ε) shared by every run (the
evaluator's seed and the searches' are the config's training.seed, 0), so it shows what the
searches spend to find the grid's best by that metric, not sample quality.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMA = "0.99,0.995,0.998,0.999"
METRIC = "eval/heldout_loss"


def run(args, log):
  """A command of this checkout, its output appended to ``log``; its wall time."""
  start = time.time()
  with open(log, "a", encoding="utf-8") as f:
    f.write("$ " + " ".join(args) + "\n")
    f.flush()
    res = subprocess.run([sys.executable, *args], cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
  if res.returncode:
    raise SystemExit(f"{' '.join(args[:3])} ... failed (exit {res.returncode}); see {log}")
  return time.time() - start


def ledger(folder):
  with open(os.path.join(folder, "sweep.json"), encoding="utf-8") as f:
    return json.load(f)


def judge(workdir, samples, seed, log):
  """The classifier Fréchet distance of a run's latest EMA parameters (cached in the run)."""
  out = os.path.join(workdir, f"judge_{samples}_seed{seed}")
  found = glob.glob(os.path.join(out, "classifier_fid_*.json"))
  if not found:
    run(["sample.py", f"--workdir={workdir}", f"--num_samples={samples}",
         "--eval=classifier_fid", f"--seed={seed}", f"--output={out}", "--progress=false"], log)
    found = glob.glob(os.path.join(out, "classifier_fid_*.json"))
  with open(found[0], encoding="utf-8") as f:
    return json.load(f)


def heldout_judge(workdir, samples, seed, log):   # pylint: disable=unused-argument
  """The stand-in judge of 2-D sets: the run's last held-out loss (as ``judge``'s "cfid")."""
  return {"cfid": last_metric(workdir)}


def last_metric(workdir, metric=METRIC):
  """The last value of ``metric`` a run logged."""
  values = []
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    for line in f:
      row = json.loads(line)
      if metric in row:
        values.append(row[metric])
  return values[-1] if values else float("nan")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/ddpm/quickstart.py")
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--steps", type=int, default=1000)
  parser.add_argument("--trials", type=int, default=16)
  parser.add_argument("--judge_samples", type=int, default=512)
  parser.add_argument("--judge", choices=("classifier_fid", "heldout_loss"),
                      default="classifier_fid")
  parser.add_argument("--lr", default="1e-3,8e-3", help="the lr range: low,high (the grid: "
                      "4 values log-spaced over it)")
  parser.add_argument("--ema", default=EMA, help="the 4 EMA decays (grid and choice)")
  args = parser.parse_args()
  low, high = (float(v) for v in args.lr.split(","))
  lrs = ",".join(f"{low * (high / low) ** (i / 3):.3g}" for i in range(4))
  grid = f"optim.lr={lrs};training.ema_decay={args.ema}"
  space = f"optim.lr=loguniform({low:g},{high:g});training.ema_decay=choice({args.ema})"
  score = judge if args.judge == "classifier_fid" else heldout_judge
  os.makedirs(args.workdir, exist_ok=True)
  log = os.path.join(args.workdir, "log.txt")
  common = [f"--config={args.config}", "--progress=false",
            f"--config.training.num_train_steps={args.steps}",
            "--config.training.log_every=100", f"--config.training.checkpoint_every={args.steps}",
            "--config.training.sample_every=0", "--config.eval.heldout_loss.every=100"]
  walls = {}
  walls["grid"] = run(["train.py", f"--workdir={os.path.join(args.workdir, 'grid')}",
                       f"--sweep={grid}", *common], log)
  # (name, searcher, the metric it optimises, its extra flags)
  searches = [("asha", "quasirandom", METRIC, []), ("tpe", "tpe", METRIC, [])]
  if args.judge == "classifier_fid":
    searches.append(("tpe_cfid", "tpe", "eval/cfid", [
        "--config.eval.classifier_fid.every=100",
        f"--config.eval.classifier_fid.num_samples={args.judge_samples}"]))
  for name, searcher, metric, extra in searches:
    walls[name] = run(["train.py", f"--workdir={os.path.join(args.workdir, name)}",
                       f"--search={space}", f"--trials={args.trials}", f"--searcher={searcher}",
                       "--scheduler=asha", f"--metric={metric}", *common, *extra], log)
  optimised = {"grid": METRIC, **{name: metric for name, _, metric, _ in searches}}

  rows = []
  grid = ledger(os.path.join(args.workdir, "grid"))
  grid_steps = args.steps * len(grid["points"])
  scored = {}
  for name in optimised:
    points = [p for p in ledger(os.path.join(args.workdir, name))["points"]
              if p["status"] == "done"]
    for p in points:
      scored[(name, p["name"])] = (score(p["workdir"], args.judge_samples, 0, log)["cfid"],
                                   last_metric(p["workdir"], optimised[name]), p)
  best_grid = min((v for k, v in scored.items() if k[0] == "grid"), key=lambda v: v[0])
  spread = [score(best_grid[2]["workdir"], args.judge_samples, s, log)["cfid"]
            for s in ((0, 1, 2) if args.judge == "classifier_fid" else (0,))]
  for name in optimised:
    data = ledger(os.path.join(args.workdir, name))
    steps = sum(int(p.get("steps") or p.get("final", {}).get("step", 0) or 0)
                for p in data["points"]) if name != "grid" else grid_steps
    mine = [v for k, v in scored.items() if k[0] == name]
    best = min(mine, key=lambda v: v[0])
    pick = min(mine, key=lambda v: v[1])   # what the sweep itself would choose, by its metric
    rows.append((name, steps, 100.0 * steps / grid_steps, walls[name],
                 sum(1 for p in data["points"] if p["status"] == "done"), best, pick))
  if args.judge == "classifier_fid":
    print(f"judge: classifier Fréchet distance of {args.judge_samples} samples (sampling seed "
          f"0); the grid's best point over sampling seeds 0, 1, 2: "
          f"{', '.join(f'{v:.2f}' for v in spread)} (spread {max(spread) - min(spread):.2f})")
  else:
    print("judge: the last held-out loss of each run trained to the end (one shared set)")
  name_ = "cfid" if args.judge == "classifier_fid" else "held-out loss"
  digits = 2 if args.judge == "classifier_fid" else 4
  print(f"| sweep | training steps | of the grid's | wall time | runs trained to the end | "
        f"best {name_} (run) | the sweep's own pick: {name_} (run) |")
  print("|---|---:|---:|---:|---:|---|---|")
  for name, steps, share, wall, done, best, pick in rows:
    print(f"| {name} | {steps:,} | {share:.0f}% | {wall / 60:.1f} min | {done} | "
          f"{best[0]:.{digits}f} ({_short(best[2])}) | {pick[0]:.{digits}f} ({_short(pick[2])}) |")


def _short(point):
  o = point["overrides"]
  return f"lr {o['optim.lr']:.2g}, EMA {o['training.ema_decay']}"


if __name__ == "__main__":
  main()

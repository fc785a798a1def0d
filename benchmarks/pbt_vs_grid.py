"""Population-based training inside one vmapped population against the sequential grid.

  python benchmarks/pbt_vs_grid.py --config=configs/ddpm/toy_mixture.py \\
      --workdir=runs/pbt_vs_grid [--steps=2000] [--members=8] [--interval=200]

Trains, through ``train.py`` (each phase resumes where a rerun finds it), with the held-out
loss on one set of 4,096 examples logged every 100 steps by every run:

  grid    lr in {2.5e-4, 5e-4, 1e-3, 2e-3} x EMA decay in {0.5, 0.9, 0.99, 0.999}: 16 runs of
          ``--steps`` steps, one after another (``--sweep_mode=sequential``);
  pbt     ``--members`` trials drawn quasi-randomly from the same ranges (lr log-uniform on
          [2.5e-4, 2e-3], the four EMA decays), trained as one population with PBT every
          ``--interval`` steps (``--sweep_mode=vmap --scheduler=pbt``);

and prints the table of BENCHMARKS.md: wall time, training steps, the best final held-out
loss of each, and the training steps the population had spent when its best member first
reached the grid's best value (P x the step).
"""

import argparse
import json
import os

from search_vs_grid import run  # the sibling script's command runner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID = "optim.lr=2.5e-4,5e-4,1e-3,2e-3;training.ema_decay=0.5,0.9,0.99,0.999"
SPACE = ("optim.lr=loguniform(2.5e-4,2e-3);training.ema_decay=choice(0.5,0.9,0.99,0.999)")
METRIC = "eval/heldout_loss"


def curve(workdir):
  """{step: held-out loss} of a run."""
  out = {}
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    for line in f:
      row = json.loads(line)
      if METRIC in row:
        out[int(row["step"])] = float(row[METRIC])
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/ddpm/toy_mixture.py")
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--steps", type=int, default=2000)
  parser.add_argument("--members", type=int, default=8)
  parser.add_argument("--interval", type=int, default=200)
  args = parser.parse_args()
  os.makedirs(args.workdir, exist_ok=True)
  log = os.path.join(args.workdir, "log.txt")
  common = [f"--config={args.config}", "--progress=false",
            f"--config.training.num_train_steps={args.steps}",
            "--config.training.log_every=100", f"--config.training.checkpoint_every={args.steps}",
            "--config.eval.heldout_loss.every=100", "--config.eval.heldout_loss.num_examples=4096",
            "--config.eval.heldout_loss.batch_size=4096"]
  grid_dir, pbt_dir = (os.path.join(args.workdir, n) for n in ("grid", "pbt"))
  wall_grid = run(["train.py", f"--workdir={grid_dir}", f"--sweep={GRID}", *common], log)
  wall_pbt = run(["train.py", f"--workdir={pbt_dir}", f"--search={SPACE}",
                  f"--trials={args.members}", "--sweep_mode=vmap", "--scheduler=pbt",
                  f"--pbt_interval={args.interval}", *common], log)
  with open(os.path.join(grid_dir, "sweep.json"), encoding="utf-8") as f:
    grid = json.load(f)
  with open(os.path.join(pbt_dir, "sweep.json"), encoding="utf-8") as f:
    pbt = json.load(f)
  grid_final = {p["name"]: curve(p["workdir"])[args.steps] for p in grid["points"]}
  best_name = min(grid_final, key=grid_final.get)
  target = grid_final[best_name]
  members = [curve(p["workdir"]) for p in pbt["points"]]
  best_at = {s: min(c[s] for c in members) for s in sorted(members[0])}
  reached = next((s for s, v in best_at.items() if v <= target), None)
  grid_steps = args.steps * len(grid["points"])
  pbt_steps = args.steps * len(members)
  copies = sum(len(d["copies"]) for d in pbt["pbt"]["decisions"])
  print(f"grid's best point: {best_name}, held-out loss {target:.4f}; PBT: "
        f"{len(pbt['pbt']['decisions'])} decisions, {copies} copies")
  print("| sweep | runs | wall time | training steps | best final held-out loss | steps when "
        "the grid's best was reached |")
  print("|---|---:|---:|---:|---:|---|")
  print(f"| grid (sequential) | {len(grid['points'])} | {wall_grid:.0f} s | {grid_steps:,} | "
        f"{target:.4f} | {grid_steps:,} (100%) |")
  reach = (f"{reached * len(members):,} ({100 * reached * len(members) / grid_steps:.0f}% of "
           f"the grid's; step {reached})" if reached else "not reached")
  print(f"| PBT, one population (vmap) | {len(members)} | {wall_pbt:.0f} s | {pbt_steps:,} | "
        f"{best_at[args.steps]:.4f} | {reach} |")


if __name__ == "__main__":
  main()

"""A search with ASHA on Ray Tune against the same search on the local engine, with a Ray
worker killed mid-trial.

  python benchmarks/ray_tune_search.py --workdir=runs/ray_tune [--trials=16] [--steps=900]

Runs ``train.py --search ... --scheduler=asha`` on ``configs/ddpm/toy_mixture.py`` twice
(quasi-random searcher, seed 0; held-out loss every 100 steps, checkpoints every 100):
``--sweep_mode=sequential`` (Optuna's pruner) and ``--sweep_mode=ray`` (Ray Tune's
ASHAScheduler, a local Ray instance with one worker per CPU). During the Ray run the worker
training trial 0 is killed (SIGKILL) once it has saved a checkpoint; Tune retries the trial
and it resumes from that checkpoint. Prints the table of BENCHMARKS.md: wall time, trials
trained to the end / stopped / failed, training steps, the best metric, whether trial 0
resumed (and from which step), and how the two ledgers compare.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPACE = "optim.lr=loguniform(1e-4,3e-3);training.ema_decay=choice(0.5,0.9,0.99)"
FIELDS = ("name", "overrides", "status", "error", "workdir", "final", "best", "trial",
          "config_id", "seed", "steps", "rungs", "metric", "best_metric", "stopped", "owner")


def checkpoints(workdir):
  folder = os.path.join(workdir, "checkpoints")
  return sorted(int(n) for n in os.listdir(folder) if n.isdigit()) if os.path.isdir(
      folder) else []


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--trials", type=int, default=16)
  parser.add_argument("--steps", type=int, default=900)
  args = parser.parse_args()
  os.makedirs(args.workdir, exist_ok=True)
  common = ["train.py", "--config=configs/ddpm/toy_mixture.py", f"--search={SPACE}",
            f"--trials={args.trials}", "--scheduler=asha", "--progress=false",
            f"--config.training.num_train_steps={args.steps}", "--config.training.log_every=100",
            "--config.training.checkpoint_every=100", "--config.eval.heldout_loss.num_examples=1024"]
  rows, ledgers, resumed = [], {}, ""
  for mode in ("sequential", "ray"):
    folder = os.path.join(args.workdir, mode)
    log = open(os.path.join(args.workdir, f"{mode}.log"), "w", encoding="utf-8")
    start = time.time()
    proc = subprocess.Popen([sys.executable, *common, f"--workdir={folder}",
                             f"--sweep_mode={mode}"], cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT)
    killed = None
    while mode == "ray" and proc.poll() is None and killed is None:
      for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        lock = os.path.join(folder, name, ".lock")
        saved = checkpoints(os.path.join(folder, name))
        if name.startswith("trial000_") and saved and 200 <= saved[-1] < args.steps and \
            os.path.exists(lock):
          holder = open(lock, encoding="utf-8").read().split()
          os.kill(int(holder[1]), signal.SIGKILL)
          killed = (name, saved[-1])
      time.sleep(0.05)
    proc.wait()
    wall = time.time() - start
    log.close()
    if proc.returncode:
      raise SystemExit(f"{mode} failed; see {log.name}")
    with open(os.path.join(folder, "sweep.json"), encoding="utf-8") as f:
      ledgers[mode] = json.load(f)
    points = ledgers[mode]["points"]
    count = {s: sum(p["status"] == s for p in points) for s in ("done", "stopped", "failed")}
    best = min(p["metric"] for p in points if p["status"] == "done")
    if killed:
      text = open(log.name, encoding="utf-8").read()
      resumed = (f"killed at checkpoint {killed[1]}; "
                 + ("resumed" if "resumed from step" in text else "NOT resumed"))
    rows.append((mode, wall, count, sum(int(p["steps"]) for p in points), best,
                 resumed if mode == "ray" else "-"))
  local, ray = ledgers["sequential"], ledgers["ray"]
  same_fields = all(set(FIELDS) <= set(p) for p in local["points"] + ray["points"])
  by_trial = {p["trial"]: p for p in local["points"]}
  same_overrides = sum(by_trial.get(p["trial"], {}).get("overrides") == p["overrides"]
                       for p in ray["points"])
  definition = {k: v for k, v in ray["definition"].items() if k != "engine"}
  print("| engine | wall time | done / stopped / failed | training steps | best "
        "eval/heldout_loss | worker killed |")
  print("|---|---:|---|---:|---:|---|")
  for mode, wall, count, steps, best, note in rows:
    print(f"| {'local (Optuna)' if mode == 'sequential' else 'Ray Tune'} | {wall / 60:.1f} min | "
          f"{count['done']} / {count['stopped']} / {count['failed']} | {steps:,} | {best:.4f} | "
          f"{note} |")
  print(f"ledgers: every entry has the local engine's fields: {same_fields}; the same "
        f"definition (but 'engine'): {definition == local['definition']}; trials with the "
        f"same overrides: {same_overrides} of {len(ray['points'])}")


if __name__ == "__main__":
  main()

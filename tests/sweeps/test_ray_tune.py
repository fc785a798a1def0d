"""Searches on Ray Tune (``--sweep_mode=ray``): a local Ray instance with 2 CPU
workers running tiny trials, a worker killed mid-trial and its trial resumed from its
checkpoint, and the ledger the same as the local engine's; Ray Tune's PBT recording its
lineage."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from diffusion import sweeps
from diffusion.io.metric_writers import read_metrics
from diffusion.paths import REPO
from tests.conftest import stderr_tail

pytest.importorskip("ray")
pytest.importorskip("optuna")

TOY_FILE = "configs/ddpm/toy_mixture.py"
SPACE = "optim.lr=loguniform(1e-4,3e-3);training.ema_decay=choice(0.5,0.9)"
ARGS = [f"--config={TOY_FILE}", "--search=" + SPACE, "--trials=3", "--searcher=random",
        "--progress=false", "--config.training.num_train_steps=600",
        "--config.training.log_every=50", "--config.training.checkpoint_every=50",
        "--config.eval.heldout_loss.num_examples=128"]
# Fields of a trial's entry that do not depend on the engine (not the owner, not the time).
SAME = ("name", "overrides", "status", "error", "trial", "config_id", "seed", "steps", "rungs",
        "metric", "best_metric", "stopped")


def saved_steps(workdir):
  folder = os.path.join(workdir, "checkpoints")
  return sorted(int(n) for n in os.listdir(folder) if n.isdigit()) if os.path.isdir(
      folder) else []


@pytest.mark.slow
def test_a_search_on_ray_tune_survives_a_killed_worker_and_keeps_the_local_ledger(tmp_path):
  local = subprocess.run([sys.executable, "train.py", f"--workdir={tmp_path / 'local'}", *ARGS],
                         cwd=REPO, capture_output=True, text=True, timeout=900)
  assert local.returncode == 0, stderr_tail(local.stderr)
  sweep_dir = tmp_path / "ray"
  proc = subprocess.Popen([sys.executable, "train.py", f"--workdir={sweep_dir}",
                           "--sweep_mode=ray", *ARGS], cwd=REPO, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  deadline, victim = time.time() + 600, None
  while time.time() < deadline and victim is None:
    for folder in sorted(sweep_dir.glob("trial000_*")):
      steps = saved_steps(str(folder))
      if steps and 50 <= max(steps) < 600 and (folder / ".lock").exists():
        victim = folder
    time.sleep(0.05)
  assert victim is not None, proc.stderr.read()[-3000:] if proc.poll() is not None else ""
  holder = open(victim / ".lock").read().split()
  assert holder[0] == "pid", holder
  os.kill(int(holder[1]), signal.SIGKILL)            # the worker training trial 0 dies
  out, err = proc.communicate(timeout=900)
  assert proc.returncode == 0, err[-3000:]
  assert "resumed from step" in out + err              # Tune retried it; it resumed
  assert [r["step"] for r in read_metrics(str(victim)) if "loss" in r] == list(
      range(50, 601, 50))                               # no step twice, none missing
  ray_ledger = sweeps.read_ledger(str(sweep_dir))
  local_ledger = sweeps.read_ledger(str(tmp_path / "local"))
  assert ray_ledger["definition"].pop("engine") == "ray"
  assert ray_ledger["definition"] == local_ledger["definition"]
  assert [{k: p[k] for k in SAME} for p in ray_ledger["points"]] == [
      {k: p[k] for k in SAME} for p in local_ledger["points"]]
  assert all(p["status"] == "done" for p in ray_ledger["points"])
  # The study in DIR holds the trials too (the summary's importance reads it).
  assert "Best trial:" in (sweep_dir / "summary.md").read_text()


@pytest.mark.slow
def test_ray_tunes_pbt_records_its_lineage(tmp_path):
  res = subprocess.run([sys.executable, "train.py", f"--workdir={tmp_path / 'pbt'}",
                        f"--config={TOY_FILE}", "--search=optim.lr=loguniform(1e-4,1e-2)",
                        "--trials=3", "--sweep_mode=ray", "--scheduler=pbt",
                        "--pbt_interval=20", "--progress=false",
                        "--config.training.num_train_steps=60",
                        "--config.training.log_every=10",
                        "--config.eval.heldout_loss.num_examples=128"],
                       cwd=REPO, capture_output=True, text=True, timeout=900)
  assert res.returncode == 0, stderr_tail(res.stderr)
  ledger = json.load(open(tmp_path / "pbt" / "sweep.json"))
  assert ledger["pbt"]["interval"] == 20 and ledger["pbt"]["keys"] == ["optim.lr"]
  decisions = ledger["pbt"]["decisions"]
  assert decisions, res.stdout[-3000:]
  names = {p["name"] for p in ledger["points"]}
  for d in decisions:
    (copy,) = d["copies"]
    assert copy["member"] in names and copy["from"] in names and copy["member"] != copy["from"]
    schedule = next(p for p in ledger["points"] if p["name"] == copy["member"])["schedule"]
    assert {"step": d["step"], "values": copy["values"], "from": copy["from"]} in schedule
  assert all(p["status"] == "done" for p in ledger["points"])
  assert (tmp_path / "pbt" / "pbt_schedules.png").exists()

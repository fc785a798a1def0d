"""``python -m diffusion.sweeps ema DIR``: the EMA-length sweep after one training run
(post-hoc EMA, EDM2 §3), through the command line on a tiny digits run trained with two
tracked profiles: one row per length, the same x_T for every length, the samples of each
row those of ``diffusion.load(DIR, ema_std_rel=...)``, reruns that add lengths, and the
one-line errors (before anything is sampled)."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import diffusion
from diffusion.paths import REPO
from diffusion.train import phema
from diffusion.train.loop import train

STEPS = 12


def tiny_digits():
  """configs/ddpm/digits.py at its smallest (one ResBlock of 32 channels, T = 20), 12 steps,
  a snapshot of (0.05, 0.1) every step; bits/dim on 16 test digits as the judge."""
  from configs.ddpm import digits  # pylint: disable=import-outside-toplevel
  config = digits.get_config()
  for key, value in {"model.ch": 32, "model.ch_mult": (1,), "model.num_res_blocks": 1,
                     "model.attn_resolutions": (), "diffusion.num_timesteps": 20,
                     "training.batch_size": 16, "training.num_train_steps": STEPS,
                     "training.log_every": 4, "training.checkpoint_every": STEPS,
                     "training.sample_every": 0, "training.phema_std_rel": (0.05, 0.1),
                     "training.phema_every": 1, "optim.warmup_steps": 2,
                     "eval.bpd.num_examples": 16, "eval.bpd.batch_size": 16,
                     "sampling.batch_size": 8}.items():
    section, name = key.rsplit(".", 1)
    node = config
    for part in section.split("."):
      node = node[part]
    node[name] = value
  return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("ema") / "digits"
  train(tiny_digits(), str(workdir), progress=False)
  return workdir


def sweep_cli(workdir, *args):
  return subprocess.run([sys.executable, "-m", "diffusion.sweeps", "ema", str(workdir),
                         "--progress=false", "--num_samples=8", "--sampler=ddim", "--steps=5",
                         *args], capture_output=True, text=True, cwd=REPO)


def _one_error_line(proc, *parts):
  assert proc.returncode == 2, proc.stdout + proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
  for part in parts:
    assert part in lines[0], lines[0]


@pytest.mark.slow
def test_the_ema_sweep_command(run, tmp_path):
  out = tmp_path / "sweep"
  proc = sweep_cli(run, "--std_rel=0.1,0.05,0.15", "--eval=bpd", f"--output={out}")
  assert proc.returncode == 0, proc.stderr
  rows = list(csv.DictReader(open(out / "summary.csv", encoding="utf-8")))
  assert [float(r["std_rel"]) for r in rows] == [0.05, 0.1, 0.15]
  assert all(int(r["step"]) == STEPS and int(r["snapshots"]) == STEPS for r in rows)
  bpd = [float(r["eval/bpd"]) for r in rows]
  assert len(set(bpd)) == 3 and all(np.isfinite(bpd))
  best = [r for r in rows if r.get("best") == "*"]
  assert len(best) == 1 and float(best[0]["eval/bpd"]) == min(bpd)   # bits/dim: minimised
  text = (out / "summary.md").read_text()
  assert "Best by eval/bpd (min)" in text and text.count("\n| 0.") == 3
  # The run's own EMA on the σ_rel axis (digits' ema_decay 0.999 after 12 steps; the
  # conversion is tested in tests/train/test_phema.py).
  own = phema.ema_decay_std_rel(0.999, STEPS)
  assert f"(training.ema_decay = 0.999, the checkpoints') is σ_rel = {own:.4g}" in text
  assert (out / "eval-bpd_vs_std_rel.png").is_file()
  # Each row is the reconstruction of its length, sampled from the same x_T (seed 0).
  for std in (0.05, 0.15):
    folder = out / f"std_rel_{std:g}"
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["ema_std_rel"] == std and meta["checkpoint_step"] == STEPS
    loaded = diffusion.load(str(run), ema_std_rel=std)
    want = loaded.to_uint8(loaded.sample(8, seed=0, method="ddim", num_steps=5))
    np.testing.assert_array_equal(np.load(folder / "samples.npz")["arr_0"], want)
  # A rerun with one more length adds its row and skips the others.
  proc = sweep_cli(run, "--std_rel=0.05,0.07", "--eval=bpd", f"--output={out}")
  assert proc.returncode == 0, proc.stderr
  assert "σ_rel 0.05: done before" in proc.stdout
  ledger = json.loads((out / "ema_sweep.json").read_text())
  assert sorted(ledger["lengths"]) == ["0.05", "0.07", "0.1", "0.15"]
  # The same folder with other settings: refused, naming what changed.
  _one_error_line(sweep_cli(run, "--std_rel=0.05", "--eval=bpd", "--seed=1",
                            f"--output={out}"), "seed: 0 there, 1 now", "--output")


def test_bad_ema_sweeps_are_one_line_before_sampling(run, tmp_path):
  out = tmp_path / "bad"
  _one_error_line(sweep_cli(run, "--eval=bpd", f"--output={out}"), "--std_rel=")
  _one_error_line(sweep_cli(run, "--std_rel=0.05,x", "--eval=bpd", f"--output={out}"),
                  "not a comma-separated list of numbers")
  _one_error_line(sweep_cli(run, "--std_rel=0.05", f"--output={out}"), "--eval=")
  _one_error_line(sweep_cli(run, "--std_rel=0.05,0.002", "--eval=bpd", f"--output={out}"),
                  "--ema_std_rel=0.002 cannot be reconstructed", "they reconstruct σ_rel in")
  _one_error_line(sweep_cli(run, "--std_rel=0.05", "--eval=no_such", f"--output={out}"),
                  "no_such")
  assert not out.exists()          # nothing sampled, nothing written
  # A run trained without post-hoc EMA (its config says so): one line.
  plain = tmp_path / "plain"
  plain.mkdir()
  config = json.loads((run / "config.json").read_text())
  config["training"].update(phema_std_rel=[], phema_every=0)
  (plain / "config.json").write_text(json.dumps(config))
  _one_error_line(sweep_cli(plain, "--std_rel=0.05", "--eval=bpd"), "trained without them",
                  "phema_std_rel=0.05,0.1")
  # A run with post-hoc EMA whose snapshots are gone.
  shutil.copy(run / "config.json", plain / "config.json")
  _one_error_line(sweep_cli(plain, "--std_rel=0.05", "--eval=bpd"),
                  "no post-hoc EMA snapshots in")
  proc = subprocess.run([sys.executable, "-m", "diffusion.sweeps", "emas", str(run)],
                        capture_output=True, text=True, cwd=REPO)
  _one_error_line(proc, "summarize or ema")

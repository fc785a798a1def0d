"""End to end through the command line: train.py writes a run, sample.py reads it."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The quickstart config shrunk to seconds: 24 steps of a tiny U-Net, T=50.
TINY = [
    "--config=configs/ddpm/digits.py", "--progress=false",
    "--config.model.ch=32", "--config.model.num_res_blocks=1",
    "--config.diffusion.num_timesteps=50", "--config.training.batch_size=16",
    "--config.training.num_train_steps=24", "--config.training.log_every=8",
    "--config.training.checkpoint_every=12", "--config.training.sample_every=24",
    "--config.training.num_samples=16", "--config.training.steps_per_call=4",
    "--config.eval.bpd.every=24", "--config.eval.bpd.num_examples=8",
    "--config.eval.bpd.batch_size=8",
]


def run(script, *args):
  return subprocess.run([sys.executable, os.path.join(REPO, script), *args], cwd=REPO,
                        capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("digits")
  res = run("train.py", *TINY, f"--workdir={workdir}")
  assert res.returncode == 0, res.stderr[-3000:]
  return workdir, res.stdout


def test_train_writes_the_whole_run(trained_run):
  workdir, stdout = trained_run
  assert "parameters | devices: 1 x cpu" in stdout
  assert "eval at step 24: eval/bpd" in stdout
  assert "done: step 24" in stdout
  config = json.load(open(workdir / "config.json"))
  assert config["data"]["dataset"] == "digits" and config["training"]["num_train_steps"] == 24
  rows = [json.loads(l) for l in open(workdir / "metrics.jsonl")]
  assert [r["step"] for r in rows if "loss" in r] == [8, 16, 24]
  bpd = [r["eval/bpd"] for r in rows if "eval/bpd" in r]
  assert len(bpd) == 1 and 0 < bpd[0] < 16  # an untrained model's bound, finite
  assert all(np.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in rows if "loss" in r)
  assert sorted(os.listdir(workdir / "checkpoints")) == ["12", "24"]
  grid = Image.open(workdir / "samples" / "step_00000024.png")
  assert grid.size == (4 * 8 * 8 + 5 * 8, 4 * 8 * 8 + 5 * 8)  # 4x4 tiles upscaled 8x
  assert os.listdir(workdir / "tb")


def test_sample_cli_ddim_with_uneven_batches_and_bpd(trained_run):
  workdir, _ = trained_run
  out = workdir / "ddim_out"
  res = run("sample.py", f"--workdir={workdir}", "--num_samples=10", "--batch_size=4",
            "--sampler=ddim", "--steps=10", "--config.sampling.eta=0.5", f"--output={out}",
            "--bpd", "--progress=false")
  assert res.returncode == 0, res.stderr[-3000:]
  assert "sampled 10 with ddim from step 24" in res.stdout
  with np.load(out / "samples.npz") as f:
    samples = f["arr_0"]
  assert samples.shape == (10, 8, 8, 1) and samples.dtype == np.uint8
  assert (out / "samples.png").exists()
  assert "bits/dim on 8 digits/test examples" in res.stdout


def test_sample_cli_ancestral_default_output(trained_run):
  workdir, _ = trained_run
  res = run("sample.py", f"--workdir={workdir}", "--num_samples=4", "--progress=false")
  assert res.returncode == 0, res.stderr[-3000:]
  out, = workdir.glob("samples_24_ancestral_s*_seed0")
  with np.load(out / "samples.npz") as f:
    assert f["arr_0"].shape == (4, 8, 8, 1)


def test_sample_cli_mismatched_config_is_one_line(trained_run):
  workdir, _ = trained_run
  res = run("sample.py", f"--workdir={workdir}", "--num_samples=2", "--config.model.ch=64",
            "--progress=false")
  assert res.returncode == 2
  last = res.stderr.strip().splitlines()[-1]
  assert last.startswith("error: checkpoint") and "does not match this config" in last
  assert "Traceback" not in res.stderr


def test_sample_cli_without_a_run_is_one_line(tmp_path):
  res = run("sample.py", f"--workdir={tmp_path}", "--progress=false")
  assert res.returncode == 2
  assert res.stderr.strip().splitlines()[-1].startswith("error: --workdir=")


def test_sample_restores_ema_only_without_optimizer_or_training_data(trained_run, tmp_path):
  """sample.py builds no optimizer and never reads the training split (only --bpd's test
  split): any optimizer construction or training-split read raises in this process."""
  workdir, _ = trained_run
  script = f"""
import runpy, sys
import optax
import diffusion.data.sources as sources

def refuse(*args, **kwargs):
  raise AssertionError("sample.py built an optimizer")

optax.inject_hyperparams = optax.scale_by_adam = optax.scale_by_rms = refuse
digits = sources.DATASETS["digits"]

def no_training_split(cfg, split):
  assert split != "train", "sample.py read the training split"
  return digits(cfg, split)

sources.DATASETS["digits"] = no_training_split
sys.argv = ["sample.py", "--workdir={workdir}", "--num_samples=3", "--bpd",
            "--progress=false", "--output={tmp_path / 'out'}"]
try:
  runpy.run_path("sample.py", run_name="__main__")
except SystemExit as e:
  assert not e.code, e.code
print("restored without an optimizer")
"""
  res = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                       text=True, timeout=600)
  assert res.returncode == 0, res.stderr[-3000:]
  assert "restored without an optimizer" in res.stdout
  assert "bits/dim on 8 digits/test examples" in res.stdout
  with np.load(tmp_path / "out" / "samples.npz") as f:
    assert f["arr_0"].shape == (3, 8, 8, 1)

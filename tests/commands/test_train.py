"""train.py, the command: the run it writes, resume after kill -9 and signals, one writer
per workdir, one-line errors (flags, config files, a full disk), W&B, and the sweeps,
searches, distributed runs and Ray it starts."""

import glob
import importlib.util
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest
from PIL import Image

from diffusion import sweeps
from diffusion.io import metric_writers
from diffusion.io.metric_writers import read_metrics
from diffusion.paths import REPO
from diffusion.train.progress import StepBar

from tests.conftest import stderr_tail
from tests.io.test_metric_writers import read_tensorboard_scalars
from tests.sweeps.test_grid import TOY_FILE, toy_file_config
from tests.sweeps.test_trials import SPACE
from tests.train.test_loop import assert_trees_equal, read_state, saved_steps

# The searches' tests need Optuna, as tests/sweeps/test_trials.py does.
needs_optuna = pytest.mark.skipif(importlib.util.find_spec("optuna") is None,
                                  reason="needs optuna (pip install '.[sweeps]')")


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


TOY_FLAGS = [
    "--config=configs/ddpm/toy_mixture.py", "--progress=false",
]


def _run_cli(args, env=None, **kw):
  env = dict(os.environ, **(env or {}))
  return subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *args],
                        capture_output=True, text=True, cwd=REPO, env=env, **kw)


TOY = ["--config=configs/ddpm/toy_mixture.py", "--progress=false"]


def run_cli(script, *args, timeout=300):
  return subprocess.run([sys.executable, os.path.join(REPO, script), *args], cwd=REPO,
                        capture_output=True, text=True, timeout=timeout)


def error_line(stderr: str) -> str:
  """The last non-empty line of stderr; the CLIs print exactly one ``error:`` line."""
  lines = [l for l in stderr.strip().splitlines() if l.strip()]
  return lines[-1] if lines else ""


def run_train(*args, timeout=600, env=None):
  return subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *args], cwd=REPO,
                        capture_output=True, text=True, timeout=timeout,
                        env=dict(os.environ, **(env or {})))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


# ---- the run train.py writes, and its resume ------------------------------------------------


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
  assert grid.size == (4 * 8 * 16 + 5 * 16, 4 * 8 * 16 + 5 * 16)  # 4x4 tiles upscaled 16x
  assert os.listdir(workdir / "tb")


@pytest.mark.slow
def test_kill9_then_resume_is_bit_identical(tmp_path):
  """kill -9 between checkpoints: the resume is bit-identical to a straight run, and
  metrics.jsonl / TensorBoard hold every logged step once (the killed run's rows after
  its last checkpoint are dropped; its TensorBoard scalars were flushed up to the kill)."""
  from diffusion.io.metric_writers import read_metrics  # pylint: disable=import-outside-toplevel
  steps = ["--config.training.num_train_steps=400", "--config.training.checkpoint_every=100",
           "--config.training.log_every=20"]
  straight = tmp_path / "straight"
  res = _run_cli(TOY_FLAGS + steps + [f"--workdir={straight}"], timeout=300)
  assert res.returncode == 0, stderr_tail(res.stderr, 2000)

  killed = tmp_path / "killed"
  proc = subprocess.Popen(
      [sys.executable, "train.py", *TOY_FLAGS, *steps, f"--workdir={killed}"],
      cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while time.time() < deadline:  # kill -9 once rows past a checkpoint were logged
    done = saved_steps(killed)
    rows = read_metrics(str(killed)) if (killed / "metrics.jsonl").exists() else []
    if done and max(done) >= 100 and rows and rows[-1]["step"] >= max(done) + 40:
      break
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
  logged = [r["step"] for r in read_metrics(str(killed))]
  assert max(logged) > max(saved_steps(killed))
  tb = read_tensorboard_scalars(str(killed))
  # Flushed up to the last logged step (the kill may fall between a row's two writes).
  assert sorted(tb) in (logged, logged[:-1])
  res = _run_cli(TOY_FLAGS + steps + [f"--workdir={killed}"], timeout=300)
  assert res.returncode == 0, stderr_tail(res.stderr, 2000)
  assert "resumed from step" in res.stdout

  import ml_collections.config_flags  # noqa: F401 - config files import it
  import importlib.util
  spec = importlib.util.spec_from_file_location("toy", os.path.join(REPO, TOY_FLAGS[0][9:]))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  config = mod.get_config()
  s1, p1, e1 = read_state(str(straight), config)
  s2, p2, e2 = read_state(str(killed), config)
  assert s1 == s2 == 400
  assert_trees_equal(p1, p2)
  assert_trees_equal(e1, e2)
  rows = read_metrics(str(killed))
  assert [r["step"] for r in rows] == list(range(20, 401, 20))   # each step once
  straight_rows = read_metrics(str(straight))
  np.testing.assert_array_equal([r["loss"] for r in rows], [r["loss"] for r in straight_rows])
  tb = read_tensorboard_scalars(str(killed))
  assert sorted(tb) == list(range(20, 401, 20))
  np.testing.assert_allclose([tb[s] for s in sorted(tb)], [r["loss"] for r in rows], rtol=1e-6)


def test_corrupt_checkpoint_fallback_prints_one_warning_not_pages(tmp_path):
  """On the command line an unreadable checkpoint costs one warning line (and the move
  aside): not orbax's late reads' tracebacks ("Event loop is closed", one per array)
  nor pages of TensorStore spec."""
  workdir = tmp_path / "run"
  steps = ["--config.training.num_train_steps=8", "--config.training.checkpoint_every=4",
           "--config.training.log_every=4", f"--workdir={workdir}"]
  assert _run_cli(TOY_FLAGS + steps, timeout=300).returncode == 0
  for f in glob.glob(str(workdir / "checkpoints" / "8" / "**" / "d" / "*"), recursive=True):
    with open(f, "wb") as fh:
      fh.write(b"corrupt")
  res = _run_cli(TOY_FLAGS + steps, timeout=300)
  assert res.returncode == 0, stderr_tail(res.stderr, 2000)
  assert "resumed from step 4" in res.stdout
  lines = res.stderr.strip().splitlines()
  assert "Traceback" not in res.stderr and "never retrieved" not in res.stderr, \
      stderr_tail(res.stderr)
  assert len(lines) == 2, stderr_tail(res.stderr)
  assert "checkpoint 8 is unreadable" in lines[0] and "unreadable_8" in lines[1]


@pytest.mark.slow
def test_wandb_offline_training_and_resume(tmp_path):
  pytest.importorskip("wandb")
  import subprocess

  def run(script, *a, env):
    return subprocess.run([sys.executable, os.path.join(REPO, script), *a], cwd=REPO,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env})
  w = tmp_path / "toy_wandb"
  args = ["train.py", "--config=configs/ddpm/toy_mixture.py", "--progress=false",
          "--config.training.log_every=10", "--config.training.checkpoint_every=10",
          "--config.training.writers=jsonl,wandb", f"--workdir={w}"]
  env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}
  res = run(*args, "--config.training.num_train_steps=20", env=env)
  assert res.returncode == 0, stderr_tail(res.stderr)
  run_id = (w / "wandb_run_id").read_text().strip()
  res = run(*args, "--config.training.num_train_steps=40", env=env)
  assert res.returncode == 0, stderr_tail(res.stderr)
  assert (w / "wandb_run_id").read_text().strip() == run_id
  runs = sorted(p.name for p in (w / "wandb").iterdir() if p.name.startswith("offline-run"))
  assert len(runs) == 2 and all(r.endswith(run_id) for r in runs), runs
  assert [r["step"] for r in metric_writers.read_metrics(str(w))][-1] == 40


@pytest.mark.slow
def test_vae_command_line_trains_samples_and_scores(tmp_path):
  workdir = tmp_path / "vae"
  args = ["--config=configs/vae/digits.py", f"--workdir={workdir}", "--progress=false",
          "--config.model.latent_dim=2", "--config.training.num_train_steps=200",
          "--config.training.sample_every=200", "--config.eval.elbo.every=200",
          "--config.eval.elbo.iw_samples=50"]
  res = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, capture_output=True,
                       text=True, timeout=600)
  assert res.returncode == 0, stderr_tail(res.stderr)
  assert "eval at step 200: eval/log_px" in res.stdout
  scored = json.load(open(workdir / "likelihood_200.json"))
  assert scored["num_examples"] == 297 and scored["iw_samples"] == 50
  assert scored["log_px_nats"] >= scored["elbo_nats"] - 3 * scored["elbo_se"]
  assert (workdir / "samples" / "step_00000200.png").exists()
  out = tmp_path / "out"
  res = subprocess.run([sys.executable, "sample.py", f"--workdir={workdir}", "--num_samples=16",
                        "--eval=elbo", f"--output={out}", "--progress=false",
                        "--config.eval.elbo.iw_samples=20", "--config.sampling.output=bernoulli"],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
  assert res.returncode == 0, stderr_tail(res.stderr)
  assert "log p(x) >=" in res.stdout and "importance sampling, k = 20" in res.stdout
  for name in ("samples.png", "samples.npz", "reconstructions.png", "prior_samples.png",
               "manifold.png", "latents.png", "likelihood_200.json"):
    assert (out / name).exists(), name
  with np.load(out / "samples.npz") as f:
    assert set(np.unique(f["arr_0"])) <= {0, 255}          # Bernoulli draws


# ---- signals --------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_saves_and_exits_cleanly(tmp_path):
  workdir = tmp_path / "run"
  proc = subprocess.Popen(
      [sys.executable, "train.py", *TOY_FLAGS, f"--workdir={workdir}",
       "--config.training.num_train_steps=1000000", "--config.training.checkpoint_every=100000",
       "--config.training.log_every=10"],
      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 120
  while time.time() < deadline and not (workdir / "metrics.jsonl").exists():
    time.sleep(0.1)
  time.sleep(1.0)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-2000:]
  assert "received SIGTERM" in out
  steps = saved_steps(workdir)
  assert len(steps) == 1 and 0 < steps[0] < 100000


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_train_py_acts_on_a_signal_promptly_in_any_phase(tmp_path, sig):
  """SIGTERM as soon as train.py reports its model (before or during compilation): one
  line or a saved stop, within a minute, never a traceback or a lost signal."""
  import subprocess
  import sys
  import time
  repo = REPO
  proc = subprocess.Popen([sys.executable, "train.py", "--config=configs/ddpm/toy_mixture.py",
                           "--progress=false", f"--workdir={tmp_path / 'w'}",
                           "--config.training.num_train_steps=1000000"], cwd=repo, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  for line in proc.stdout:
    if line.startswith("model:"):
      proc.send_signal(sig)
      signalled = time.time()
      break
  out, err = proc.communicate(timeout=120)
  assert time.time() - signalled < 60
  assert "Traceback" not in err, err[-2000:]
  if proc.returncode == 2:    # before the first step: nothing saved, the new workdir removed
    assert err.strip().splitlines()[-1].startswith("error: interrupted")
    assert not (tmp_path / "w").exists()
  else:                       # during the first call: saved, then stopped
    assert proc.returncode == 0 and "saved checkpoint" in out


@pytest.mark.slow
def test_ctrl_c_before_the_first_step_leaves_nothing(tmp_path):
  workdir = tmp_path / "run"
  proc = subprocess.Popen(
      [sys.executable, "train.py", "--config=configs/ddpm/digits.py", "--progress=false",
       f"--workdir={workdir}"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True)
  deadline = time.time() + 120
  while time.time() < deadline and not (workdir / "config.json").exists():
    time.sleep(0.02)
  assert (workdir / "config.json").exists()
  proc.send_signal(signal.SIGINT)                    # during restore / the first compile
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 2, err[-2000:]
  assert error_line(err) == ("error: interrupted (Ctrl-C) before the first step; nothing "
                             "was saved.")
  assert "Traceback" not in err and not workdir.exists()


# ---- one writer at a time -------------------------------------------------------------------


@pytest.mark.slow
def test_two_processes_on_one_workdir_one_trains_the_other_exits(tmp_path):
  workdir = tmp_path / "run"
  args = TOY + [f"--workdir={workdir}", "--config.training.num_train_steps=200",
                "--config.training.log_every=20", "--config.training.checkpoint_every=100"]
  procs = [subprocess.Popen([sys.executable, "train.py", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
  results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
  codes = sorted(r[0] for r in results)
  assert codes == [0, 2], [r[2][-1500:] for r in results]
  loser = next(r for r in results if r[0] == 2)
  line = error_line(loser[2])
  assert line.startswith(f"error: --workdir={workdir} is in use by pid ") and " on host " in line
  assert "Traceback" not in loser[2]
  rows = metric_writers.read_metrics(str(workdir))
  assert [r["step"] for r in rows] == list(range(20, 201, 20))   # as after a single run
  assert saved_steps(workdir) == [100, 200]


# ---- disk full ------------------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path):
  mount = tmp_path / "tmpfs"
  mount.mkdir()
  res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                       capture_output=True, text=True)
  if res.returncode:
    pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or 'not permitted'})")
  yield mount
  subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow
def test_disk_full_is_one_line_and_the_run_resumes_after_space_is_freed(small_tmpfs):
  workdir = small_tmpfs / "run"
  args = TOY + [f"--workdir={workdir}", "--config.training.num_train_steps=400",
                "--config.training.log_every=10", "--config.training.checkpoint_every=50"]
  filler = small_tmpfs / "filler"
  filler.touch()            # before the run: its checkpoints may fill the disk on their own
  proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=REPO, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  deadline = time.time() + 200
  while time.time() < deadline and not saved_steps(workdir):
    time.sleep(0.05)
  assert saved_steps(workdir), "no first checkpoint"
  # Take every free byte of the disk, unbuffered: a buffered file's close would try to
  # write what the full disk refused again, and raise.
  with open(filler, "ab", buffering=0) as f:
    try:
      while True:
        f.write(b"\0" * 65536)
    except OSError:
      pass
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 2, err[-2000:]
  assert error_line(err).startswith("error: no space left on the device writing ")
  assert "checkpoint" in error_line(err) and "Traceback" not in err
  kept = saved_steps(workdir)
  assert kept and kept[-1] < 400
  filler.unlink()
  res = run_cli("train.py", *args)
  assert res.returncode == 0, stderr_tail(res.stderr, 2000)
  assert f"resumed from step {kept[-1]}" in res.stdout and "done: step 400" in res.stdout
  steps = [r["step"] for r in metric_writers.read_metrics(str(workdir))]
  assert steps == list(range(10, 401, 10))           # every step once


# ---- every command-line fault: one line, exit 2, nothing left behind ------------------------


@pytest.mark.parametrize("override,start", [
    ("--config.diffusion.schedule=cosinus", "error: diffusion.schedule='cosinus'"),
    ("--config.diffusion.schedul=cosine", "error: --config.diffusion.schedul: the config has "
     "no field 'schedul' (did you mean \"schedule\"?)"),
    ("--config.training.batch_size=abc", "error: flag --config.training.batch_size=abc"),
])
def test_cli_bad_flag_is_one_line_without_traceback(tmp_path, override, start):
  res = _run_cli(["--config=configs/ddpm/cifar10.py", f"--workdir={tmp_path}", override],
                 timeout=120)
  assert res.returncode == 2
  lines = [l for l in res.stderr.strip().splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith(start), stderr_tail(res.stderr, 2000)


@pytest.mark.parametrize("args, start", [
    (["--config=configs/nope.py"], "error: --config=configs/nope.py: no such file"),
    (["--config.training.num_samples=0"], "error: training.num_samples=0 is not valid"),
    (["--config.optim.lr=inf"], "error: optim.lr=inf is not valid"),
])
def test_train_cli_faults_are_one_line(tmp_path, args, start):
  workdir = tmp_path / "run"
  if not args[0].startswith("--config="):
    args = [TOY[0]] + args
  res = run_cli("train.py", *args, f"--workdir={workdir}", "--progress=false")
  assert res.returncode == 2 and error_line(res.stderr).startswith(start), \
      stderr_tail(res.stderr, 2000)
  assert "Traceback" not in res.stderr and not workdir.exists()


def test_broken_config_file_names_file_and_line(tmp_path):
  bad = tmp_path / "broken.py"
  bad.write_text("def get_config():\n  return (\n")
  res = run_cli("train.py", f"--config={bad}", f"--workdir={tmp_path / 'run'}")
  assert res.returncode == 2
  assert error_line(res.stderr).startswith(f"error: --config={bad}: syntax error at line ")
  raising = tmp_path / "raising.py"
  raising.write_text("def get_config():\n  return undefined_name\n")
  res = run_cli("train.py", f"--config={raising}", f"--workdir={tmp_path / 'run'}")
  assert res.returncode == 2 and "get_config() failed: NameError" in error_line(res.stderr)
  assert "Traceback" not in res.stderr and not (tmp_path / "run").exists()


def test_workdir_that_is_a_file(tmp_path):
  path = tmp_path / "a_file"
  path.write_text("not a folder")
  res = run_cli("train.py", *TOY, f"--workdir={path}")
  assert res.returncode == 2
  assert error_line(res.stderr) == (f"error: --workdir={path} is a file, not a folder; give a "
                                    "folder (it is created if needed).")
  assert path.read_text() == "not a folder"


# ---- sweeps and searches --------------------------------------------------------------------


@pytest.mark.slow
def test_sweep_with_a_failed_point_exits_2_naming_it(tmp_path):
  import subprocess
  import sys
  repo = REPO
  res = subprocess.run(
      [sys.executable, "train.py", f"--config={TOY_FILE}", "--progress=false",
       f"--workdir={tmp_path}", "--sweep=optim.lr=1e-3,1e38;optim.warmup_steps=0",
       "--config.training.num_train_steps=4", "--config.training.log_every=2"],
      cwd=repo, capture_output=True, text=True, timeout=600)
  assert res.returncode == 2, stderr_tail(res.stderr, 2000)
  assert res.stderr.strip().splitlines()[-1].startswith(
      "error: 1 sweep point(s) failed: lr=1e+38_warmup_steps=0")
  assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_sequential_sweep_killed_mid_point_resumes_bit_exactly(tmp_path):
  sweep_dir = tmp_path / "sweep"
  args = [f"--config={TOY_FILE}", f"--workdir={sweep_dir}", "--progress=false",
          "--sweep=training.seed=0,1,2", "--config.training.num_train_steps=300",
          "--config.training.checkpoint_every=20", "--config.training.log_every=20"]
  proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  second = sweep_dir / "seed=1"
  deadline = time.time() + 300
  while time.time() < deadline and not (saved_steps(second) and max(saved_steps(second)) >= 60):
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  ledger = sweeps.read_ledger(str(sweep_dir))
  assert [p["status"] for p in ledger["points"]] == ["done", "running", "pending"]
  first_mtime = os.path.getmtime(sweep_dir / "seed=0" / "metrics.jsonl")
  res = run_train(*args)
  assert res.returncode == 0, stderr_tail(res.stderr, 2000)
  assert "seed=0 is done, skipped" in res.stdout and "resumed from step" in res.stdout
  assert os.path.getmtime(sweep_dir / "seed=0" / "metrics.jsonl") == first_mtime
  ledger = sweeps.read_ledger(str(sweep_dir))
  assert [p["status"] for p in ledger["points"]] == ["done"] * 3
  # The interrupted point equals an uninterrupted run of the same config, bit for bit.
  from diffusion.train.loop import train  # pylint: disable=import-outside-toplevel
  cfg = toy_file_config(**{"training.seed": 1, "training.num_train_steps": 300,
                           "training.checkpoint_every": 20, "training.log_every": 20})
  train(cfg, str(tmp_path / "straight"), progress=False)
  s1, p1, e1 = read_state(str(second), cfg)
  s2, p2, e2 = read_state(str(tmp_path / "straight"), cfg)
  assert s1 == s2 == 300
  assert_trees_equal(p1, p2)
  assert_trees_equal(e1, e2)
  assert [r["step"] for r in read_metrics(str(second))] == list(range(20, 301, 20))


@needs_optuna
def test_train_py_refuses_conflicts_before_anything_is_written(tmp_path):
  """One command through train.py (the others are the same check_flags:
  tests/sweeps/test_search_settings.py)."""
  res = run_train(f"--config={TOY_FILE}", f"--workdir={tmp_path / 'w'}", "--search=" + SPACE,
                  "--scheduler=pbt")
  assert res.returncode == 2 and res.stderr.strip().startswith("error: --scheduler=pbt")
  assert "--sweep_mode=vmap" in res.stderr and len(res.stderr.strip().splitlines()) == 1
  assert not (tmp_path / "w").exists()


@needs_optuna
@pytest.mark.slow
def test_train_py_runs_a_search_of_real_trials(tmp_path):
  res = run_train(f"--config={TOY_FILE}", f"--workdir={tmp_path / 's'}", "--progress=false",
                  "--search=" + SPACE, "--trials=2", "--metric=loss",
                  "--config.training.num_train_steps=20", "--config.training.log_every=10",
                  "--config.training.checkpoint_every=10")
  assert res.returncode == 0, stderr_tail(res.stderr)
  ledger = sweeps.read_ledger(str(tmp_path / "s"))
  assert [p["status"] for p in ledger["points"]] == ["done", "done"]
  for p in ledger["points"]:
    rows = read_metrics(p["workdir"])
    assert p["metric"] == rows[-1]["loss"] and p["steps"] == 20
    assert json.load(open(os.path.join(p["workdir"], "config.json")))["optim"]["lr"] == \
        p["overrides"]["optim.lr"]
  assert "Best trial:" in res.stdout and (tmp_path / "s" / "search_progress.png").exists()


# ---- several processes: jax.distributed, Ray ------------------------------------------------


@pytest.mark.slow
def test_jax_distributed_two_processes_match_one(tmp_path):
  """Two processes joined by jax.distributed (coordinator on 127.0.0.1, one CPU device
  each) train a single run and a population to the parameters of one process with two
  devices: the multi-host path."""
  steps = [f"--config={TOY_FILE}", "--config.training.num_train_steps=40",
           "--config.training.log_every=10", "--config.training.checkpoint_every=20",
           "--config.training.batch_size=32", "--progress=false"]
  single = "--sweep=optim.lr=1e-3,2e-3;training.seed=3"
  cases = {"run": [], "population": [single, "--sweep_mode=vmap"]}
  for name, extra in cases.items():
    port = _free_port()
    procs = [subprocess.Popen(
        [sys.executable, "train.py", *steps, *extra, f"--workdir={tmp_path / 'two' / name}",
         "--distributed", f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
         f"--process_id={i}"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=dict(os.environ, JAX_PLATFORMS="cpu",
                            XLA_FLAGS="--xla_force_host_platform_device_count=1"))
             for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert "devices: 2 x cpu" in outs[0][0] and "2 process(es)" in outs[0][0]
    res = run_train(*steps, *extra, f"--workdir={tmp_path / 'one' / name}",
                    env=dict(JAX_PLATFORMS="cpu",
                             XLA_FLAGS="--xla_force_host_platform_device_count=2"))
    assert res.returncode == 0, stderr_tail(res.stderr, 2000)
  cfg = toy_file_config(**{"training.batch_size": 32})
  grid = sweeps.parse_grid(single[len("--sweep="):])
  pairs = [("run", cfg)] + [(os.path.join("population", n), sweeps.apply_overrides(cfg, p))
                            for n, p in zip(sweeps.point_names(grid), grid)]
  for rel, point_cfg in pairs:
    s1, p1, e1 = read_state(str(tmp_path / "two" / rel), point_cfg)
    s2, p2, e2 = read_state(str(tmp_path / "one" / rel), point_cfg)
    assert s1 == s2 == 40, rel
    for a, b in zip(jax.tree.leaves((p1, e1)), jax.tree.leaves((p2, e2))):
      np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
  assert [p["status"] for p in sweeps.read_ledger(str(tmp_path / "two" / "population"))[
      "points"]] == ["done", "done"]


@pytest.mark.slow
def test_ray_sweep_runs_three_points_and_retries_a_killed_task(tmp_path):
  pytest.importorskip("ray")
  sweep_dir = tmp_path / "ray"
  args = [f"--config={TOY_FILE}", f"--workdir={sweep_dir}", "--progress=false",
          "--sweep=training.seed=0,1,2", "--sweep_mode=ray",
          "--config.training.num_train_steps=600", "--config.training.checkpoint_every=50",
          "--config.training.log_every=50"]
  proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=REPO, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  victim = sweep_dir / "seed=0"
  deadline = time.time() + 300
  while time.time() < deadline and not (saved_steps(victim) and 50 <= max(saved_steps(victim)) < 600):
    time.sleep(0.05)
  holder = open(victim / ".lock").read().split()
  assert holder[0] == "pid", holder
  os.kill(int(holder[1]), signal.SIGKILL)          # the worker running the point dies
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  points = sweeps.read_ledger(str(sweep_dir))["points"]
  assert [p["status"] for p in points] == ["done"] * 3, points
  assert all(p["final"]["step"] == 600 for p in points)
  assert [r["step"] for r in read_metrics(str(victim))] == list(range(50, 601, 50))
  assert "resumed from step" in out + err           # the retried task resumed the point


@pytest.mark.slow
def test_two_ctrl_c_after_steps_ran_say_what_was_kept_and_the_rerun_cleans_up(tmp_path):
  """Two Ctrl-C 0.3 s apart once steps were logged (the probe's case: exit 2 said "before
  the first step; nothing was saved" after 24 logged steps, and an orbax temporary stayed):
  the line says what is on disk, and the next run leaves no orbax temporary."""
  for i, wait in enumerate((0.0, 1.0)):
    workdir = tmp_path / f"run{i}"
    proc = subprocess.Popen(
        [sys.executable, "train.py", *TOY_FLAGS, f"--workdir={workdir}",
         "--config.training.num_train_steps=1000000",
         "--config.training.checkpoint_every=100000", "--config.training.log_every=10"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    metrics = workdir / "metrics.jsonl"
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().strip()):
      time.sleep(0.05)     # a row: steps ran and were logged
    time.sleep(wait)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    if proc.poll() is None:
      proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 2) and "Traceback" not in err, err[-2000:]
    steps = saved_steps(workdir)
    if proc.returncode == 2:
      line = error_line(err)
      assert line.startswith("error: interrupted (Ctrl-C)"), line
      if steps and f"saved checkpoint {steps[-1]}, exiting" in out:   # the 2nd came later
        assert (line == "error: interrupted (Ctrl-C); nothing more was written."
                or f"checkpoint {steps[-1]} is intact" in line), line
      elif steps:
        assert f"checkpoint {steps[-1]} is intact" in line, (line, steps)
      else:   # never "before the first step; nothing was saved" once steps ran
        assert "the last finished step was" in line and "starts from step 0" in line, line
    else:
      assert "saved checkpoint" in out and steps
    res = run("train.py", *TOY_FLAGS, f"--workdir={workdir}",
              f"--config.training.num_train_steps={(steps[-1] if steps else 0) + 10}",
              "--config.training.checkpoint_every=10", "--config.training.log_every=10")
    assert res.returncode == 0, stderr_tail(res.stderr, 2000)
    left = [p.name for p in (workdir / "checkpoints").iterdir() if "tmp" in p.name]
    assert not left, left


# ---- the bar counts finished steps; Ctrl-C saves within a call --------------------------
# The quickstart's U-Net at batch 512: a step long enough (about a second on 2 cores) that
# work queued behind the bar would show; logs and checkpoints far beyond the steps run.
SLOW_STEPS = ["train.py", "--config=configs/ddpm/quickstart.py",
              "--config.training.batch_size=512", "--config.training.num_train_steps=100000",
              "--config.training.log_every=100000", "--config.training.sample_every=0"]
BAR = re.compile(r"\|\s*(\d+)/100000 \[([^\]]*)\]")


class _Watched:
  """A train.py subprocess whose stdout and stderr lines (tqdm's \\r too) are read by
  threads, each with the time it arrived."""

  def __init__(self, args):
    self.proc = subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
    self.out, self.err = [], []
    self._threads = [threading.Thread(target=self._read, args=(s, d), daemon=True)
                     for s, d in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
    for t in self._threads:
      t.start()

  @staticmethod
  def _read(stream, lines):
    buf = b""
    while True:
      chunk = stream.read1(4096) if hasattr(stream, "read1") else stream.read(1)
      if not chunk:
        break
      buf += chunk
      *done, buf = re.split(rb"[\r\n]", buf)
      lines.extend((time.time(), d.decode(errors="replace")) for d in done if d.strip())
    if buf.strip():
      lines.append((time.time(), buf.decode(errors="replace")))

  def bars(self):
    """(finished steps shown, the bar's bracket text) of every bar line so far."""
    return [(int(m.group(1)), m.group(2)) for _, line in list(self.err)
            for m in [BAR.search(line)] if m]

  def wait_for_bar(self, n: int, timeout: float = 400):
    deadline = time.time() + timeout
    while time.time() < deadline:
      shown = self.bars()
      if shown and shown[-1][0] >= n:
        return shown[-1][0]
      assert self.proc.poll() is None, "\n".join(l for _, l in self.err)[-3000:]
      time.sleep(0.02)
    raise AssertionError("no bar reached step %d" % n)

  def finish(self, timeout: float = 300):
    self.proc.wait(timeout=timeout)
    for t in self._threads:
      t.join(timeout=10)
    return self.proc.returncode

  def text(self, which):
    return "\n".join(l for _, l in getattr(self, which))


def _seconds_per_step(bracket: str) -> float:
  """The bar's rate: '... 1.23s/step' or '... 4.56step/s'."""
  m = re.search(r"([\d.]+)s/step", bracket)
  return float(m.group(1)) if m else 1.0 / float(re.search(r"([\d.]+)step/s", bracket).group(1))


@pytest.mark.slow
def test_ctrl_c_saves_the_step_in_progress_without_queued_work(tmp_path):
  """log_every >> steps (no host sync in the old loop for 100,000 steps): the bar shows
  finished steps, no rate or ETA until 3 timed calls after the compiling one, and Ctrl-C
  after N shown steps saves the call running then (N + 1, or a few more where steps are
  shorter than the bar's redraw interval) about one step later, not after a queue of
  dispatched steps. The wait is measured in the run's own step times (the bar's rate),
  not in seconds of this machine."""
  w = tmp_path / "w"
  run = _Watched([*SLOW_STEPS, f"--workdir={w}", "--config.training.checkpoint_every=100000"])
  shown = run.wait_for_bar(6)
  per_step = _seconds_per_step(run.bars()[-1][1])
  signalled = time.time()
  run.proc.send_signal(signal.SIGINT)
  assert run.finish() == 0, run.text("err")[-3000:]
  saved = [t for t, l in run.out if "saved checkpoint" in l]
  assert saved, run.text("out")
  step = int(re.search(r"saved checkpoint (\d+)", run.text("out")).group(1))
  # The bar redraws at most every REDRAW_SECONDS, so up to that many seconds of finished
  # steps may be unshown when the signal goes; then the running call's step, and one more
  # for the signal landing as a call ends.
  unshown = math.ceil(StepBar.REDRAW_SECONDS / per_step)
  assert shown <= step <= shown + unshown + 2, (shown, step, per_step)
  assert saved[0] - signalled < 3 * per_step + 20, (saved[0] - signalled, per_step)
  assert sorted(os.listdir(w / "checkpoints")) == [str(step)]
  # The first bar lines (compiling, then the first timed calls) show no rate and no ETA.
  bars = run.bars()
  assert "compiling the training step" in bars[0][1]
  early = [b for n, b in bars if n <= 3]
  assert early and not any("step/s" in b or "s/step" in b or "<" in b for b in early)
  assert "in about" in run.text("err") and "when step" in run.text("err")


@pytest.mark.slow
@pytest.mark.parametrize("gap", [0.05, 0.3])
def test_second_ctrl_c_stops_at_once_and_keeps_the_last_checkpoint(tmp_path, gap):
  """Two Ctrl-C ``gap`` s apart: exit 2 at once with a line that counts the finished
  steps (never "before the first step"), or, when the first came as a step ended, that
  step saved (a save is never cut); either way no orbax temporary folder, and the rerun
  resumes from the newest checkpoint."""
  w = tmp_path / "w"
  run = _Watched([*SLOW_STEPS, f"--workdir={w}", "--config.training.checkpoint_every=2"])
  shown = run.wait_for_bar(5)
  run.proc.send_signal(signal.SIGINT)
  time.sleep(gap)
  run.proc.send_signal(signal.SIGINT)
  status = run.finish(timeout=120)
  names = os.listdir(w / "checkpoints")
  assert not [n for n in names if "tmp" in n], names
  if status == 0:   # the first signal's save had begun: it finished, then the run stopped
    kept = int(re.search(r"saved checkpoint (\d+)", run.text("out")).group(1))
    assert kept >= shown
  else:
    assert status == 2, run.text("err")[-3000:]
    last = run.text("err").strip().splitlines()[-1]
    m = re.fullmatch(r"error: interrupted \(Ctrl-C\) twice: stopped without saving; the "
                     r"last finished step was (\d+) \(the call running then is dropped\); "
                     r"checkpoint (\d+) is intact: run the same command again to resume "
                     r"from step \2\.", last)
    assert m, last
    done, kept = int(m.group(1)), int(m.group(2))
    assert done >= shown and kept == done - done % 2
  assert str(kept) in names
  res = subprocess.run([sys.executable, *SLOW_STEPS[:2], f"--workdir={w}", "--progress=false",
                        "--config.training.batch_size=512",
                        f"--config.training.num_train_steps={kept + 1}"],
                       cwd=REPO,
                       capture_output=True, text=True, timeout=400)
  assert res.returncode == 0, stderr_tail(res.stderr, 2000)
  assert f"resumed from step {kept}" in res.stdout


@pytest.mark.slow
def test_a_signal_at_any_point_of_a_grid_ends_cleanly_and_the_rerun_finishes(tmp_path):
  """Ctrl-C at many points of a sequential grid (start-up, a point's compilation, its
  steps, the second point): one true line and exit 2, or the finished grid; the same
  command then finishes every point, and no orbax temporary is left."""
  from tests.test_cli import assert_ended_cleanly, signalled  # pylint: disable=import-outside-toplevel
  for i, delay in enumerate((1, 4, 8, 14)):
    sweep_dir = tmp_path / f"sweep{i}"
    argv = [sys.executable, "train.py", *TOY_FLAGS, f"--workdir={sweep_dir}",
            "--sweep=training.seed=0,1", "--config.training.num_train_steps=200",
            "--config.training.checkpoint_every=50", "--config.training.log_every=50"]
    for delay_, rc, out, err in signalled(argv, [delay]):
      assert_ended_cleanly(delay_, rc, out, err)
    res = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (delay, stderr_tail(res.stderr, 2000))
    for seed in (0, 1):
      assert max(saved_steps(sweep_dir / f"seed={seed}")) == 200, (delay, seed)
    left = [str(p) for p in sweep_dir.rglob("*orbax-checkpoint-tmp*")]
    assert not left, (delay, left)

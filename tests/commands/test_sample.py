"""sample.py, the command: restores a run (EMA only), draws with any sampler, never
overwrites, says what it did, and fails before sampling in one line; diffusion.generate
writes what it writes.

Runs on a 20-step toy_mixture run (seconds) and the tiny digits run of train.py's tests."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from diffusion import samplers
from diffusion.paths import REPO

from tests.commands.test_train import error_line, run, run_cli, TINY



TOY = ["--config=configs/ddpm/toy_mixture.py", "--progress=false",
       "--config.training.num_train_steps=20", "--config.training.log_every=10",
       "--config.training.checkpoint_every=10"]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("toy")
  res = run("train.py", *TOY, f"--workdir={workdir}")
  assert res.returncode == 0, res.stderr[-3000:]
  return workdir


def one_error_line(res, *words):
  assert res.returncode == 2, (res.stdout, res.stderr[-2000:])
  assert "Traceback" not in res.stderr
  last = res.stderr.strip().splitlines()[-1]
  assert last.startswith("error: "), last
  for w in words:
    assert w in last, last
  return last


# ---- the digits run of train.py's tests (tests/commands/conftest.py) ------------------------


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


# ---- a 20-step toy_mixture run: never overwrite, say what was done, fail before sampling ----


def test_second_call_never_overwrites_and_meta_json(toy_run):
  w = toy_run
  a = run("sample.py", f"--workdir={w}", "--num_samples=5", "--progress=false")
  b = run("sample.py", f"--workdir={w}", "--num_samples=5", "--progress=false")
  c = run("sample.py", f"--workdir={w}", "--num_samples=5", "--progress=false",
          "--sampler=ddim", "--steps=10", "--config.sampling.eta=0.5", "--seed=3")
  for res in (a, b, c):
    assert res.returncode == 0, res.stderr[-3000:]
  # The effective number of steps is printed (the config's 0 = every level: 100).
  assert "sampling 5 with ancestral, 100 steps of 100 levels" in a.stdout
  assert "sampling 5 with ddim, 10 steps of 100 levels (--steps=10)" in c.stdout
  first = w / "samples_20_ancestral_s100_seed0"
  second = w / "samples_20_ancestral_s100_seed0_2"
  third = w / "samples_20_ddim_s10_eta0.5_seed3"
  for d in (first, second, third):
    assert (d / "samples.npz").exists() and (d / "meta.json").exists(), os.listdir(w)
  meta = json.load(open(third / "meta.json"))
  assert meta["sampler"] == "ddim" and meta["steps"] == 10 and meta["eta"] == 0.5
  assert meta["seed"] == 3 and meta["checkpoint_step"] == 20 and meta["count"] == 5
  assert meta["seconds"] > 0 and meta["date"].startswith("20")
  assert meta["checkpoint"].endswith(os.path.join("checkpoints", "20"))
  with np.load(first / "samples.npz") as f, np.load(second / "samples.npz") as g:
    np.testing.assert_array_equal(f["arr_0"], g["arr_0"])  # same settings, same samples


def test_explicit_output_holding_samples_is_refused(toy_run, tmp_path):
  out = tmp_path / "o"
  assert run("sample.py", f"--workdir={toy_run}", "--num_samples=2", "--progress=false",
             f"--output={out}").returncode == 0
  before = (out / "samples.npz").read_bytes()
  res = run("sample.py", f"--workdir={toy_run}", "--num_samples=2", "--progress=false",
            f"--output={out}", "--seed=1")
  one_error_line(res, "already holds samples")
  assert (out / "samples.npz").read_bytes() == before


def test_output_a_file_or_unwritable_fails_before_sampling(toy_run, tmp_path):
  f = tmp_path / "a_file"
  f.write_text("x")
  res = run("sample.py", f"--workdir={toy_run}", "--num_samples=2", f"--output={f}")
  one_error_line(res, "is a file")
  assert "sampling" not in res.stdout
  res = run("sample.py", f"--workdir={toy_run}", "--num_samples=2", f"--output={f}/sub")
  one_error_line(res, "is a file, not a folder")
  # Unwritable even for root: /proc refuses new files.
  res = run("sample.py", f"--workdir={toy_run}", "--num_samples=2",
            "--output=/proc/no_such/out")
  one_error_line(res, "not writable")
  assert "sampling" not in res.stdout
  if os.geteuid() != 0:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    res = run("sample.py", f"--workdir={toy_run}", "--num_samples=2", f"--output={ro}/o")
    one_error_line(res, "not writable")


def test_num_samples_beyond_memory_is_one_line(toy_run):
  res = run("sample.py", f"--workdir={toy_run}", "--num_samples=1000000000000",
            "--progress=false")
  one_error_line(res, "--num_samples=1000000000000 needs about", "give --num_samples <=")


def test_progress_is_shown(toy_run):
  res = run("sample.py", f"--workdir={toy_run}", "--num_samples=3", "--batch_size=1")
  assert res.returncode == 0, res.stderr[-3000:]
  assert "3/3" in res.stderr and "img" in res.stderr


def test_num_samples_zero_needs_an_evaluation(toy_run):
  res = run("sample.py", f"--workdir={toy_run}", "--num_samples=0")
  one_error_line(res, "--num_samples=0", "--bpd")


def test_no_orbax_warnings(toy_run):
  res = run("sample.py", f"--workdir={toy_run}", "--num_samples=2", "--progress=false")
  assert res.returncode == 0
  assert "read_only" not in res.stderr and "read only" not in res.stderr, res.stderr


@pytest.mark.parametrize("damage", ["truncated", "unknown_field"])
def test_damaged_config_json_is_one_line(toy_run, tmp_path, damage):
  w = tmp_path / "w"
  w.mkdir()
  text = (toy_run / "config.json").read_text()
  if damage == "truncated":
    text = text[:100]
  else:
    cfg = json.loads(text)
    cfg["model"]["bogus_field"] = 1
    text = json.dumps(cfg)
  (w / "config.json").write_text(text)
  res = run("sample.py", f"--workdir={w}", "--num_samples=2")
  last = one_error_line(res, str(w / "config.json"))
  assert ("restore it" in last) if damage == "truncated" else ("bogus_field" in last
                                                               and "Fix or remove" in last)


def test_bpd_without_sampling_announces_its_file(tmp_path):
  w = tmp_path / "digits"
  res = run("train.py", *TINY, "--config.eval.bpd.every=0", "--config.training.sample_every=0",
            f"--workdir={w}")
  assert res.returncode == 0, res.stderr[-3000:]
  res = run("sample.py", f"--workdir={w}", "--num_samples=0", "--eval=bpd")
  assert res.returncode == 0, res.stderr[-3000:]
  assert "sampled" not in res.stdout
  # Announced before it runs, with its size; a bar over the bound's terms; then the result.
  lines = res.stdout.splitlines()
  announce = [i for i, l in enumerate(lines) if l.startswith("bpd: DDPM's 50-term bound on "
                                                            "8 digits/test images")]
  result = [i for i, l in enumerate(lines) if "bits/dim on 8 digits/test examples" in l]
  assert announce and result and announce[0] < result[0], res.stdout
  assert "bpd: terms of the bound" in res.stderr and "/50 " in res.stderr
  # Named after what ran (no sampler ran), with real times.
  out = w / "eval_24_bpd_seed0"
  wrote = [l for l in res.stdout.splitlines() if l.startswith("wrote ") and "bpd" in l]
  assert wrote and os.path.exists(wrote[0].split(" ", 1)[1]), res.stdout
  assert not (out / "samples.npz").exists()
  meta = json.load(open(out / "meta.json"))
  assert meta["count"] == 0 and meta["evals"] == ["bpd"] and "sampler" not in meta
  assert 0 < meta["eval_seconds"]["bpd"] <= meta["seconds"]


@pytest.mark.parametrize("flag, start", [
    ("--batch_size=-4", "error: --batch_size=-4 is not valid"),
    ("--checkpoint_step=-5", "error: --checkpoint_step=-5 is not valid"),
    ("--num_samples=-1", "error: --num_samples=-1 is not valid"),
    ("--num_samples=0", "error: --num_samples=0 draws nothing; give --bpd"),
    ("--steps=-1", "error: --steps=-1 is not valid"),
    ("--seed=-1", "error: --seed=-1 is not valid"),
    ("--checkpoint_step=7", "error: --checkpoint_step=7 is not in"),
])
def test_sample_cli_numeric_flags(toy_run, tmp_path, flag, start):
  workdir = toy_run
  out = tmp_path / "out"
  res = run_cli("sample.py", f"--workdir={workdir}", flag, f"--output={out}", "--progress=false")
  assert res.returncode == 2 and error_line(res.stderr).startswith(start), res.stderr[-2000:]
  assert "Traceback" not in res.stderr and not out.exists()


def test_helpfull_shows_no_yaml_dump_of_the_config(toy_run):
  res = run("sample.py", f"--workdir={toy_run}", "--helpfull")
  text = " ".join((res.stdout + res.stderr).split())
  assert "--config.<field>=... overrides a field" in text
  assert "mixture_means" not in res.stdout + res.stderr
  # --sampler lists every registered sampler; --bpd and --fid are the evaluators' shortcuts.
  assert " | ".join(samplers.SAMPLERS) + " (default: config.sampling.method)" in text
  assert "--[no]bpd: Compute bits/dim" in text and "--[no]fid: Compute FID/IS/KID" in text


# ---- diffusion.generate writes what sample.py writes ----------------------------------------


def test_generate_from_python_writes_what_sample_py_writes(toy_run, tmp_path):
  """diffusion.generate called from Python: the samples sample.py draws with the same
  settings, the default folder named by them, meta.json returned, and ConfigError (not
  an exit) for a bad argument, before anything is written."""
  import diffusion  # pylint: disable=import-outside-toplevel
  res = run("sample.py", f"--workdir={toy_run}", "--num_samples=6", "--progress=false",
            "--sampler=ddim", "--steps=10", "--config.sampling.eta=0.5", "--seed=4",
            f"--output={tmp_path / 'cli'}")
  assert res.returncode == 0, res.stderr[-3000:]
  config = json.load(open(toy_run / "config.json"))
  config["sampling"]["eta"] = 0.5
  result = diffusion.generate(config, str(toy_run), num_samples=6, seed=4, sampler="ddim",
                              steps=10, progress=False)
  assert result.output == str(toy_run / "samples_20_ddim_s10_eta0.5_seed4")
  assert json.load(open(os.path.join(result.output, "meta.json"))) == result.meta
  assert result.meta["count"] == 6 and result.meta["eta"] == 0.5 and result.scores == {}
  with np.load(tmp_path / "cli" / "samples.npz") as f, \
      np.load(os.path.join(result.output, "samples.npz")) as g:
    assert f["arr_0"].shape == (6, 2)
    np.testing.assert_array_equal(f["arr_0"], result.samples)
    np.testing.assert_array_equal(g["arr_0"], result.samples)
  with pytest.raises(diffusion.ConfigError, match="--num_samples=0 draws nothing"):
    diffusion.generate(None, str(toy_run), num_samples=0, output=str(tmp_path / "none"))
  assert not (tmp_path / "none").exists()

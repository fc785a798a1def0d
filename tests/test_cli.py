"""End to end through the command line: train.py writes a run, sample.py reads it."""

import json
import os
import re
import signal
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
  assert grid.size == (4 * 8 * 16 + 5 * 16, 4 * 8 * 16 + 5 * 16)  # 4x4 tiles upscaled 16x
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


# ---- every command parses with absl through diffusion/cli.py --------------------------------


def command(module, *args, **kwargs):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                        text=True, timeout=300, **kwargs)


def one_error(res, status=2):
  """The one ``error:`` line of a failed command (no traceback, nothing else on stderr)."""
  assert res.returncode == status, (res.returncode, res.stderr[-2000:])
  lines = res.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr[-2000:]
  return lines[0]


@pytest.mark.parametrize("module, usage", [
    ("diffusion.reproduce", "python -m diffusion.reproduce NAME [--tier=cpu|gpu|paper|weights]"),
    ("diffusion.data", "python -m diffusion.data pack FOLDER OUT.npz --image_size 64"),
    ("diffusion.sweeps", "python -m diffusion.sweeps summarize DIR"),
    ("diffusion.evals.inception_convert", "python -m diffusion.evals.inception_convert"),
    ("diffusion.pretrained", "export --workdir=DIR --out=OUT [--checkpoint_step=N]"),
])
def test_help_shows_the_usage_and_a_bad_flag_is_one_line(module, usage):
  res = command(module, "--help")
  assert res.returncode == 0, res.stderr[-2000:]   # asking for help is not a failure
  assert usage in res.stdout and "Traceback" not in res.stderr
  assert one_error(command(module, "--no_such_flag=1", "list")) == (
      "error: Unknown command line flag 'no_such_flag'; --help lists the flags.")


def test_every_command_shows_warnings_but_not_library_info_logs(tmp_path):
  """cli.run quiets the logs for every command (reproduce printed 147 orbax INFO lines
  when only train.py and sample.py did this), errors stay, and a library's log of the
  command's own KeyboardInterrupt goes (the command's one line reports the signal)."""
  script = tmp_path / "probe_command.py"
  script.write_text(
      "from absl import logging\nfrom diffusion import cli\n"
      "def main(argv):\n  logging.info('routine orbax note')\n"
      "  logging.warning('something to act on')\n"
      # A library that catches the command's Ctrl-C and logs it (orbax at a signal).
      "  try:\n    raise KeyboardInterrupt\n  except BaseException:\n"
      "    logging.exception('Save Finalize thread failed')\n"
      "  try:\n    raise ValueError('disk')\n  except ValueError:\n"
      "    logging.exception('a write failed')\n"
      "cli.run(main)\n")
  res = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, PYTHONPATH=REPO))
  assert res.returncode == 0, res.stderr[-2000:]
  assert "something to act on" in res.stderr and "routine orbax note" not in res.stderr
  assert "a write failed" in res.stderr and "ValueError: disk" in res.stderr
  assert "Save Finalize" not in res.stderr and "KeyboardInterrupt" not in res.stderr


def test_reproduce_command_line():
  # A flag's value after a space, and a positional NAME between flags.
  line = one_error(command("diffusion.reproduce", "--tier", "gpu", "ncsn_fig3_exact"))
  assert line == "error: ncsn_fig3_exact has no gpu tier; it has cpu."
  assert one_error(command("diffusion.reproduce")).startswith(
      "error: no NAME given; `python -m diffusion.reproduce list` shows the names. usage: ")
  assert "one NAME, not 'list extra'" in one_error(command("diffusion.reproduce", "list",
                                                           "extra"))
  assert one_error(command("diffusion.reproduce", "ncsn_fig3_exact", "--seed=x")) == (
      "error: flag --seed=x: invalid literal for int() with base 10: 'x'")


def test_data_command_line(tmp_path):
  res = command("diffusion.data", "prepare", "digits", "--data_dir", str(tmp_path))
  assert res.returncode == 0 and "digits: nothing to prepare" in res.stdout, res.stderr[-2000:]
  assert one_error(command("diffusion.data")).startswith(
      "error: no command given; choose prepare, pack or list. usage: python -m diffusion.data "
      "prepare NAME | pack FOLDER OUT.npz --image_size N | list")
  assert one_error(command("diffusion.data", "prepare")) == (
      "error: prepare takes NAME; got none. usage: python -m diffusion.data prepare NAME "
      "[--manual_dir DIR] [--data_dir DIR]")
  assert one_error(command("diffusion.data", "prepare", "mnist", "--limit=3")).startswith(
      "error: --limit: not a flag of prepare.")
  assert one_error(command("diffusion.data", "pack", str(tmp_path), "out.npz")).startswith(
      "error: pack needs --image_size N")
  folder = tmp_path / "images"
  folder.mkdir()
  Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(folder / "a.png")
  res = command("diffusion.data", "pack", str(folder), str(tmp_path / "out.npz"),
                "--image_size", "8", "--grayscale")
  assert res.returncode == 0, res.stderr[-2000:]
  with np.load(tmp_path / "out.npz") as f:
    assert f["images"].shape == (1, 8, 8, 1)


def test_sweeps_command_line(tmp_path):
  points = [{"name": "lr=0.001", "overrides": {"optim.lr": 0.001}, "status": "pending",
             "error": None, "workdir": str(tmp_path / "lr=0.001"), "final": {}, "best": {}}]
  (tmp_path / "sweep.json").write_text(json.dumps(
      {"config": "configs/ddpm/toy_mixture.py", "sweep": "optim.lr=1e-3",
       "common_overrides": {}, "points": points}))
  res = command("diffusion.sweeps", "summarize", str(tmp_path))
  assert res.returncode == 0 and "| lr=0.001 | pending |" in res.stdout, res.stderr[-2000:]
  assert (tmp_path / "summary.md").exists()
  for args in ((), ("summarise", str(tmp_path))):
    assert one_error(command("diffusion.sweeps", *args)).endswith(
        "usage: python -m diffusion.sweeps summarize DIR")
  (tmp_path / "sweep.json").write_text("[]")
  assert "not a sweep ledger" in one_error(command("diffusion.sweeps", "summarize",
                                                   str(tmp_path)))


def test_inception_convert_command_line(tmp_path):
  assert one_error(command("diffusion.evals.inception_convert", "a.pth")) == (
      "error: give SRC.pth and DST.npz (1 argument(s) given). usage: python -m "
      "diffusion.evals.inception_convert SRC.pth DST.npz [--any_weights]")
  src, dst = tmp_path / "nothing.pth", tmp_path / "out.npz"
  line = one_error(command("diffusion.evals.inception_convert", str(src), str(dst),
                           "--any_weights"), status=1)
  assert line.startswith(f"error: cannot convert {str(src)!r}: ") and not dst.exists()


@pytest.mark.parametrize("sig, name", [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_a_signal_while_a_command_starts_is_one_line(sig, name):
  """A signal while `python -m diffusion.reproduce` imports the package (JAX, Flax, ...)
  ends in one line, exit 2 (the package's start-up handler, diffusion.cli.preamble)."""
  proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "diffusion.reproduce",
                           "list"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  for line in proc.stderr:   # -X importtime: a line as each module has been imported
    if re.search(r"\|\s+jax\b", line):   # JAX loads after diffusion/__init__'s preamble
      proc.send_signal(sig)
      break
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 2, err[-2000:]
  assert "Traceback" not in err
  assert err.strip().splitlines()[-1] == (f"error: interrupted ({name}) while starting; "
                                          "nothing was written.")


def test_the_command_line_read_before_absl_parses_it():
  """cli.flag_value / config_overrides (config_flags runs the config file while absl
  parses, so --config, --workdir and the overrides are read first) take what absl takes."""
  from diffusion import cli  # pylint: disable=import-outside-toplevel
  from diffusion.errors import ConfigError  # pylint: disable=import-outside-toplevel
  argv = ["train.py", "--workdir", "a", "--config=c.py:x", "--config.optim.lr=1e-3",
          "--workdir=b", "--config.training.progress", "--", "--workdir=c"]
  assert cli.flag_value(argv, "workdir") == "b" and cli.config_file(argv) == "c.py"
  assert cli.flag_value(argv, "seed") is None and cli.flag_value(["p", "--seed"], "seed") is None
  assert cli.config_overrides(argv) == [("optim.lr", "1e-3"), ("training.progress", None)]
  assert cli.subcommand(["p", "pack", "x"], {"prepare": 0, "pack": 1}, "usage: p") == "pack"
  with pytest.raises(ConfigError, match=r"^'x' is not a command; choose a, b or c\. usage: p$"):
    cli.subcommand(["p", "x"], dict.fromkeys("abc"), "usage: p")
  with pytest.raises(ConfigError, match=r"^no command given; choose a\. usage: p$"):
    cli.subcommand(["p"], ["a"], "usage: p")
  assert cli.is_starting_command(["-m"]) and cli.is_starting_command(["/x/sample.py", "--a"])
  assert not cli.is_starting_command(["-c"]) and not cli.is_starting_command(["pytest"])

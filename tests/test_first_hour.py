"""Issue 23: a new user's first hour (accelerator warning, light core, writers, sample grids)."""

import os

import pytest

from diffusion import cli


@pytest.fixture
def no_accelerator(monkeypatch):
  monkeypatch.delenv("JAX_PLATFORMS", raising=False)
  real_exists = os.path.exists
  monkeypatch.setattr(cli.os.path, "exists",
                      lambda p: False if p in ("/dev/nvidia0", "/dev/accel0") else real_exists(p))
  monkeypatch.setattr("shutil.which", lambda name: None)


def test_gpu_visible_but_jax_on_cpu_warns_in_one_line(no_accelerator, monkeypatch):
  monkeypatch.setattr("shutil.which",
                      lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None)
  line = cli.accelerator_warning(["cpu"])
  assert line is not None and "\n" not in line
  assert "GPU" in line and "only the CPU" in line and ".[cuda12]" in line
  assert cli.accelerator_warning(["gpu"]) is None          # JAX has it: silent
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")                 # CPU on purpose: silent
  assert cli.accelerator_warning(["cpu"]) is None


def test_dev_nvidia0_and_dev_accel0(no_accelerator, monkeypatch):
  real_exists = os.path.exists
  monkeypatch.setattr(cli.os.path, "exists",
                      lambda p: True if p == "/dev/nvidia0" else real_exists(p)
                      if p != "/dev/accel0" else False)
  assert "GPU" in cli.accelerator_warning(["cpu"])
  monkeypatch.setattr(cli.os.path, "exists",
                      lambda p: True if p == "/dev/accel0" else real_exists(p)
                      if p != "/dev/nvidia0" else False)
  line = cli.accelerator_warning(["cpu"])
  assert "TPU" in line and ".[tpu]" in line


def test_no_accelerator_no_warning(no_accelerator, capsys):
  assert cli.accelerator_warning(["cpu"]) is None
  cli.warn_if_accelerator_unused()
  assert capsys.readouterr().err == ""


# --- W&B as an optional metric writer --------------------------------------------------

import json  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402

import numpy as np  # noqa: E402

from diffusion.errors import ConfigError  # noqa: E402
from diffusion.io import metric_writers  # noqa: E402


class _FakeRun:
  def __init__(self, log, kwargs):
    self.log_calls, self.kwargs, self.finished = log, kwargs, False

  def log(self, row, step):
    self.log_calls.append((step, row))

  def finish(self):
    self.finished = True


def _fake_wandb(monkeypatch):
  calls = {"init": [], "log": []}
  mod = types.ModuleType("wandb")
  mod.util = types.SimpleNamespace(generate_id=lambda: f"id{len(calls['init'])}abc")
  mod.Image = lambda arr: ("image", arr.shape)

  def init(**kwargs):
    calls["init"].append(kwargs)
    run = _FakeRun(calls["log"], kwargs)
    run.log = lambda row, step: calls["log"].append((step, row))
    return run
  mod.init = init
  monkeypatch.setitem(sys.modules, "wandb", mod)
  return calls


def test_wandb_writer_same_rows_name_config_and_resume(tmp_path, monkeypatch):
  calls = _fake_wandb(monkeypatch)
  w = tmp_path / "my_run"
  w.mkdir()
  (w / "config.json").write_text(json.dumps({"training": {"batch_size": 8}}))
  mw = metric_writers.MetricWriter(str(w), writers="jsonl,wandb")
  mw.write_scalars(10, {"loss": np.float32(0.5)})
  mw.write_images(10, "samples", np.zeros((8, 8, 3), np.uint8))
  mw.close()
  assert not (w / "tb").exists()                         # tensorboard not asked for
  init = calls["init"][0]
  assert init["name"] == "my_run" and init["config"] == {"training": {"batch_size": 8}}
  assert init["resume"] == "allow" and init["dir"] == str(w)
  run_id = (w / metric_writers.WANDB_ID_FILE).read_text().strip()
  assert init["id"] == run_id
  row = metric_writers.read_metrics(str(w))[0]
  assert calls["log"][0] == (10, {"loss": row["loss"]})   # the metrics.jsonl row
  assert calls["log"][1] == (10, {"samples": ("image", (8, 8, 3))})
  # A restart logs into the same run.
  mw = metric_writers.MetricWriter(str(w), resume_step=10, writers="jsonl,tensorboard,wandb")
  mw.close()
  assert calls["init"][1]["id"] == run_id and (w / "tb").exists()


def test_default_writers_do_not_need_wandb(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "wandb", None)       # import wandb fails
  mw = metric_writers.MetricWriter(str(tmp_path))
  mw.write_scalars(1, {"loss": 1.0})
  mw.close()
  assert (tmp_path / "tb").exists() and (tmp_path / "metrics.jsonl").exists()
  with pytest.raises(ConfigError, match=r"pip install '\.\[wandb\]'"):
    metric_writers.MetricWriter(str(tmp_path / "x"), writers="jsonl,wandb")


def test_writers_field_is_validated():
  from configs import base
  from diffusion.config import checks
  cfg = base.get_config()
  cfg.training.writers = "jsonl,tensorbord"
  with pytest.raises(ConfigError, match="training.writers"):
    checks.validate(cfg, num_devices=1)


@pytest.mark.slow
def test_wandb_offline_training_and_resume(tmp_path):
  pytest.importorskip("wandb")
  import subprocess
  from tests.test_cli import REPO

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
  assert res.returncode == 0, res.stderr[-3000:]
  run_id = (w / "wandb_run_id").read_text().strip()
  res = run(*args, "--config.training.num_train_steps=40", env=env)
  assert res.returncode == 0, res.stderr[-3000:]
  assert (w / "wandb_run_id").read_text().strip() == run_id
  runs = sorted(p.name for p in (w / "wandb").iterdir() if p.name.startswith("offline-run"))
  assert len(runs) == 2 and all(r.endswith(run_id) for r in runs), runs
  assert [r["step"] for r in metric_writers.read_metrics(str(w))][-1] == 40


# --- Quiet logs --------------------------------------------------------------------------

def test_routine_library_warnings_are_dropped(caplog):
  import logging
  cli.quiet_logs()
  logger = logging.getLogger("absl")
  routine = ["CheckpointManagerOptions.read_only=True, setting save_interval_steps=0.",
             "Given directory is read only=/w/checkpoints",
             "OpenCV is not installed. Image decoding falls back to PIL.",
             "/data/tmp has no dataset_info.json"]
  assert all(not cli._FILTER.filter(logging.LogRecord("absl", logging.WARNING, "", 0, m,
                                                      None, None)) for m in routine)
  kept = logging.LogRecord("absl", logging.WARNING, "", 0, "a real warning", None, None)
  assert cli._FILTER.filter(kept)
  err = logging.LogRecord("absl", logging.ERROR, "", 0, routine[-1], None, None)
  assert cli._FILTER.filter(err)                                # errors always pass
  assert cli._FILTER in logger.filters and cli._FILTER in logging.getLogger().filters


# --- Sample grids: announced, with progress, and where they are ---------------------------

def test_grids_are_announced_and_the_last_line_says_where_the_newest_is(tmp_path, capsys):
  from diffusion.train.loop import train
  from tests.test_training import toy_config
  w = tmp_path / "w"
  train(toy_config(**{"training.sample_every": 4}), str(w), progress=False)
  out, err = capsys.readouterr()
  lines = out.strip().splitlines()
  # toy_mixture (DDPM preset): grids with DDIM's 50 steps (training.grid_method), not the
  # ancestral chain over all T = 100 levels of config.sampling; grids at steps 4 and 8.
  announce = "sampling 64 with ddim, 50 steps (sample_every=4; 0 turns grids off)"
  assert lines.count(announce) == 2
  wrote = [l for l in lines if l.startswith("wrote samples/")]
  assert [l.split(" (")[0] for l in wrote] == ["wrote samples/step_00000004.npy",
                                               "wrote samples/step_00000008.npy"]
  assert all(l.startswith(announce) for l in [lines[lines.index(x) - 1] for x in wrote])
  assert all(l.endswith(" s)") and "(64 samples, " in l for l in wrote)
  newest = w / "samples" / "step_00000008.npy"
  assert lines[-1].startswith("done: step 8, loss ")
  assert lines[-1].endswith(f", samples {newest}") and newest.is_file()
  assert "sampling" not in err   # progress=False: no bar, nothing per chain step


def test_a_run_without_grids_ends_without_a_grid_path(tmp_path, capsys):
  from diffusion.train.loop import train
  from tests.test_training import toy_config
  train(toy_config(), str(tmp_path / "w"), progress=False)   # toy_mixture: sample_every=0
  lines = capsys.readouterr().out.strip().splitlines()
  assert not any(l.startswith(("sampling ", "wrote ")) for l in lines)
  assert lines[-1].startswith("done: ") and lines[-1].endswith(f"workdir {tmp_path / 'w'}")


def test_grid_chain_reports_progress_with_the_same_samples():
  """The chain in segments (a report about every 5%) draws exactly what one compiled
  chain draws; the reports count finished steps up to the chain's length."""
  import jax
  from diffusion import families, samplers
  from diffusion.families import builders
  from diffusion.samplers import chain
  from tests.test_training import toy_config
  family = families.make_family(toy_config(**{"model.name": "analytic"}))
  plan = samplers.make_plan(family.process, **builders.sampler_options(family.config.sampling))
  key = jax.random.PRNGKey(3)
  whole = samplers.run_plan(plan, family.eps_fn({}), (128, 2), key, x0_range=None)
  reports = []
  parts = samplers.run_plan(plan, family.eps_fn({}), (128, 2), key, x0_range=None,
                            on_progress=lambda done, total: reports.append((done, total)))
  np.testing.assert_array_equal(np.asarray(whole), np.asarray(parts))
  assert [d for d, _ in reports] == list(range(5, 101, 5)) and {n for _, n in reports} == {100}
  for n in (1, 7, 50, 100, 1000, 1160, 997):
    pieces = chain.segments(n)
    assert pieces[0][0] == 0 and pieces[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))
    assert len({b - a for a, b in pieces}) <= 2 and len(pieces) <= 30
  assert len({b - a for a, b in chain.segments(1000)}) == 1   # one compiled segment
  with pytest.raises(ValueError, match="trajectory_every=0"):
    samplers.run_plan(plan, family.eps_fn({}), (4, 2), key, trajectory_every=10,
                      on_progress=print)


def test_grid_chain_in_segments_compiles_once_for_every_grid():
  """The training loop's sampler with progress: new parameters at every grid reuse the
  compiled segment (the parameters are arguments, not constants of a new closure)."""
  import jax
  from diffusion import families
  from diffusion.samplers import chain
  from tests.test_training import toy_config
  family = families.make_family(toy_config())
  sample_fn = family.sample_fn(16, on_progress=lambda done, total: None)
  params = family.init_params(jax.random.PRNGKey(0))
  first = np.asarray(sample_fn(params, jax.random.PRNGKey(1)))
  compiled = chain._run_segment._cache_size()  # pylint: disable=protected-access
  moved = jax.tree.map(lambda p: p + 0.01, params)
  second = np.asarray(sample_fn(moved, jax.random.PRNGKey(1)))
  assert chain._run_segment._cache_size() == compiled  # pylint: disable=protected-access
  assert not np.array_equal(first, second)   # the new parameters were used
  np.testing.assert_array_equal(first, np.asarray(family.sample_fn(16)(params,
                                                                      jax.random.PRNGKey(1))))


def test_grid_chain_bar_with_progress(tmp_path, capsys):
  from diffusion.train.loop import train
  from tests.test_training import toy_config
  # training.grid_method="": the grids take config.sampling (the 100-level ancestral chain).
  train(toy_config(**{"training.sample_every": 8, "training.grid_method": ""}),
        str(tmp_path / "w"), progress=True)
  out, err = capsys.readouterr()
  assert "sampling 64 with ancestral, 100 steps" in out
  assert "sampling:" in err and "/100" in err   # the chain's own bar, on stderr


def test_grid_sampler_is_checked_where_it_is_set():
  """training.grid_steps is checked against the process like sampling.num_steps, and the
  error names the grid's field; sample.py's config.sampling is untouched by it."""
  from diffusion.config import checks, grid_sampling
  from tests.test_training import toy_config
  c = checks.validate(toy_config())
  assert (grid_sampling(c).method, grid_sampling(c).num_steps) == ("ddim", 50)
  assert (c.sampling.method, c.sampling.num_steps) == ("ancestral", 0)
  short = checks.validate(toy_config(**{"training.grid_steps": 500}))   # T = 100 levels
  assert grid_sampling(short).num_steps == 100
  with pytest.raises(ConfigError, match=r"^training\.grid_steps=3 is not valid for "
                     r"annealed_langevin.*training\.grid_method='annealed_langevin'"):
    checks.validate(toy_config(**{"training.grid_method": "annealed_langevin",
                                  "training.grid_steps": 3}))
  with pytest.raises(ConfigError, match="training.grid_method='fast'"):
    checks.validate(toy_config(**{"training.grid_method": "fast"}))

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
  from diffusion.samplers import chain
  from tests.test_training import toy_config
  family = families.make_family(toy_config(**{"model.name": "analytic"}))
  plan = samplers.make_plan(family.process, family.config.sampling)
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


# --- Issue 31: the bar counts finished steps; Ctrl-C saves within a call -------------------

import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

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
    from tests.test_cli import REPO
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
  after N shown steps saves checkpoint N or N + 1 (the call running then) about one step
  later, not after a queue of dispatched steps. The wait is measured in the run's own step
  times (the bar's rate), not in seconds of this machine."""
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
  assert shown <= step <= shown + 2
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
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       capture_output=True, text=True, timeout=400)
  assert res.returncode == 0, res.stderr[-2000:]
  assert f"resumed from step {kept}" in res.stdout


def test_a_signal_during_a_save_lets_the_save_finish(tmp_path, monkeypatch):
  """Two signals while a checkpoint is written: the checkpoint is finished (a cut one would
  be lost and leave orbax's temporary folder), then the loop stops there."""
  from diffusion.io.checkpoints import Checkpointer
  from diffusion.train.loop import train
  from tests.test_training import toy_config
  original = Checkpointer.save

  def save_while_signalled(self, step, state):
    if step == 4:
      os.kill(os.getpid(), signal.SIGINT)
      os.kill(os.getpid(), signal.SIGINT)
    original(self, step, state)

  monkeypatch.setattr(Checkpointer, "save", save_while_signalled)
  w = tmp_path / "w"
  final = train(toy_config(), str(w), progress=False)
  assert final["interrupted"] == "SIGINT" and final["step"] == 4
  assert sorted(os.listdir(w / "checkpoints")) == ["4"]


def test_second_signal_while_a_call_runs_names_the_finished_steps(tmp_path, monkeypatch):
  """In-process (the API): the second signal during a call's wait raises Interrupted with
  the finished steps and the intact checkpoint; the rerun resumes from it."""
  from diffusion.train import progress
  from diffusion.train.loop import Interrupted, train
  from tests.test_training import toy_config
  original, calls = progress.CallWaiter.wait, []

  def wait_signalled(self, tree):
    calls.append(1)
    if len(calls) == 6:      # the call that ends at step 6; checkpoint 4 is on disk
      os.kill(os.getpid(), signal.SIGINT)
      os.kill(os.getpid(), signal.SIGINT)
    original(self, tree)

  monkeypatch.setattr(progress.CallWaiter, "wait", wait_signalled)
  w = tmp_path / "w"
  with pytest.raises(Interrupted, match=r"^interrupted \(Ctrl-C\) twice: stopped without "
                     r"saving; the last finished step was 5 .*checkpoint 4 is intact: run the "
                     r"same command again to resume from step 4\.$") as e:
    train(toy_config(), str(w), progress=False)
  assert e.value.abandoned
  monkeypatch.setattr(progress.CallWaiter, "wait", original)
  assert train(toy_config(), str(w), progress=False)["step"] == 8


# --- Issue 31: a config whose forward process never reaches the prior is told so ----------

@pytest.mark.parametrize("overrides, expected", [
    ({"diffusion.schedule": "linear", "diffusion.num_timesteps": 50}, "vp"),
    ({"diffusion.schedule": "scaled_linear", "diffusion.num_timesteps": 50}, None),
    ({}, None),                                  # toy_mixture: cosine, T = 100
])
def test_prior_not_reached_is_one_warning_line(tmp_path, capsys, overrides, expected):
  from diffusion.train.loop import train
  from tests.test_training import toy_config
  train(toy_config(**{"training.num_train_steps": 2, **overrides}), str(tmp_path / "w"),
        progress=False)
  warnings = [l for l in capsys.readouterr().err.splitlines() if l.startswith("warning:")]
  if expected is None:
    assert not warnings
    return
  # DDPM's linear beta 1e-4 -> 0.02 over T = 50, in float64: alpha_bar_T = prod(1 - beta).
  abar = float(np.prod(1.0 - np.linspace(1e-4, 0.02, 50, dtype=np.float64)))
  assert len(warnings) == 1 and f"alpha_bar_T = {abar:.3g} > 0.01" in warnings[0]
  assert "diffusion.schedule=scaled_linear" in warnings[0]


def test_ve_sigma_max_below_the_data_spread_is_one_warning_line(tmp_path, capsys):
  from configs.ncsn import toy_mixture
  from diffusion.core import prior
  from diffusion.train.loop import train
  # NCSN's mixture 0.8 N((5,5), I) + 0.2 N((-5,-5), I): per coordinate the variance is
  # 1 + 0.8 * 0.2 * 10^2 = 17, so the spread is sqrt(2 * 17) = 5.83. Monte Carlo with
  # 200,000 draws: the standard error of the spread is about 0.01 (the mode share's
  # 8.9e-4, times d(2 Var)/dp = 2 * 100 * (1 - 2p) = -120, over 2 * 5.83); 5 of them allowed.
  rng = np.random.default_rng(0)
  modes = np.where(rng.random(200_000)[:, None] < 0.8, 5.0, -5.0)
  assert abs(prior.data_spread(modes + rng.normal(size=(200_000, 2))) - np.sqrt(34)) < 0.05
  config = toy_mixture.get_config()
  config.training.num_train_steps, config.training.log_every = 2, 2
  config.training.checkpoint_every = 2
  config.diffusion.sigma_max = 4.0
  train(config, str(tmp_path / "low"), progress=False)
  warnings = [l for l in capsys.readouterr().err.splitlines() if l.startswith("warning:")]
  assert len(warnings) == 1 and "sigma_max = 4 is below the data's spread " in warnings[0]
  # The loop measures the spread on 1,000 examples: standard error about 0.14.
  spread = float(re.search(r"spread ([\d.]+)", warnings[0]).group(1))
  assert abs(spread - np.sqrt(34)) < 0.5, spread
  config.diffusion.sigma_max = 20.0
  train(config, str(tmp_path / "high"), progress=False)
  assert "warning:" not in capsys.readouterr().err


def test_log_rows_hold_the_interval_mean_loss(tmp_path):
  """``loss_mean`` of a row is the mean of every step's loss since the previous row (the
  same run logged at every step gives them; training is deterministic), ``loss`` stays
  the last step's."""
  from diffusion.io.metric_writers import read_metrics
  from diffusion.train.loop import train
  from tests.test_training import toy_config
  train(toy_config(**{"training.log_every": 1}), str(tmp_path / "every"), progress=False)
  train(toy_config(**{"training.log_every": 4}), str(tmp_path / "four"), progress=False)
  every = {r["step"]: r for r in read_metrics(str(tmp_path / "every")) if "loss" in r}
  four = [r for r in read_metrics(str(tmp_path / "four")) if "loss" in r]
  assert [r["step"] for r in four] == [4, 8]
  for r in four:
    window = [every[s]["loss"] for s in range(r["step"] - 3, r["step"] + 1)]
    np.testing.assert_allclose(r["loss_mean"], np.mean(window), rtol=1e-6)
    assert r["loss"] == every[r["step"]]["loss"]
    assert every[r["step"]]["loss_mean"] == every[r["step"]]["loss"]

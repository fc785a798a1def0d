"""diffusion/train/loop.py: exact resume, checkpoint fallback and retention, NaN handling,
signals (saved, reported), refused resumes, workdirs the system refuses, models without
parameters, sample grids, and the VAE through the same loop."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from diffusion import families
from diffusion.errors import ConfigError
from diffusion.io import checkpoints, metric_writers
from diffusion.io.checkpoints import Checkpointer
from diffusion.io.metric_writers import read_metrics
from diffusion.train import optim
from diffusion.train import progress
from diffusion.train.loop import initial_state, Interrupted, NonFiniteLossError, train
from diffusion.paths import REPO

from tests.conftest import stderr_tail
from tests.families.test_vae import tiny_config



# ---- the toy run and its saved state (helpers of tests across tests/) -----------------------


def toy_config(**overrides):
  """configs/ddpm/toy_mixture.py (2-D data, small MLP) shortened to 8 steps."""
  from configs.ddpm import toy_mixture
  config = toy_mixture.get_config()
  config.training.num_train_steps = 8
  config.training.log_every = 2
  config.training.checkpoint_every = 4
  for key, value in overrides.items():
    section, field = key.split(".")
    config[section][field] = value
  return config


def read_state(workdir, config):
  """(step, params, ema_params) of the latest checkpoint of a run, as numpy."""
  family = families.make_family(config)
  optimizer = optim.make_optimizer(config.optim)
  target = jax.eval_shape(lambda: initial_state(family, optimizer))
  ckpt = checkpoints.Checkpointer(workdir)
  state, step = ckpt.restore_latest(target)
  ckpt.close()
  return step, jax.tree.map(np.asarray, state.params), jax.tree.map(np.asarray, state.ema_params)


def saved_steps(workdir):
  """Finalised checkpoint steps on disk (orbax writes to *.orbax-checkpoint-tmp first)."""
  names = [os.path.basename(p) for p in glob.glob(os.path.join(str(workdir), "checkpoints", "*"))]
  return sorted(int(n) for n in names if n.isdigit())


def assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def assert_same_final_state(workdir_a, config_a, workdir_b, config_b, step):
  """Both runs' latest checkpoints are at ``step`` with bit-identical params and EMA."""
  s1, p1, e1 = read_state(str(workdir_a), config_a)
  s2, p2, e2 = read_state(str(workdir_b), config_b)
  assert s1 == s2 == step
  assert_trees_equal(p1, p2)
  assert_trees_equal(e1, e2)


# ---- exact resume ---------------------------------------------------------------------------


def test_exact_resume_in_process(tmp_path):
  config = toy_config()
  train(config, str(tmp_path / "straight"), progress=False)
  half = toy_config(**{"training.num_train_steps": 4})
  train(half, str(tmp_path / "resumed"), progress=False)
  train(config, str(tmp_path / "resumed"), progress=False)
  assert_same_final_state(tmp_path / "straight", config, tmp_path / "resumed", config, 8)
  rows = [json.loads(l) for l in open(tmp_path / "resumed" / "metrics.jsonl")]
  assert [r["step"] for r in rows] == [2, 4, 6, 8]  # logs kept across the resume


def test_steps_per_call_matches_single_steps(tmp_path):
  """Scanning 2 steps per call computes exactly the same updates."""
  train(toy_config(), str(tmp_path / "one"), progress=False)
  train(toy_config(**{"training.steps_per_call": 2}), str(tmp_path / "two"), progress=False)
  _, p1, _ = read_state(str(tmp_path / "one"), toy_config())
  _, p2, _ = read_state(str(tmp_path / "two"), toy_config())
  for x, y in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_resume_takes_the_changed_config_hyperparameters(tmp_path):
  """The restored optimizer state carries its old hyperparameters; the config wins."""
  workdir = str(tmp_path / "run")
  train(toy_config(), workdir, progress=False)
  changed = toy_config(**{"optim.lr": 3e-4, "optim.warmup_steps": 0,
                          "training.num_train_steps": 12})
  train(changed, workdir, progress=False)
  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  lrs = {r["step"]: r["lr"] for r in rows}
  assert lrs[8] == pytest.approx(1e-3)     # toy config: 1e-3 after 5 warm-up steps
  assert lrs[10] == pytest.approx(3e-4) and lrs[12] == pytest.approx(3e-4)


def test_multi_device_matches_single_device(tmp_path):
  """8 simulated CPU devices give the same loss and parameters as 1 device."""
  script = f"""
import sys, json
sys.path.insert(0, {REPO!r})
import jax, numpy as np
assert jax.device_count() == 8, jax.devices()
from tests.train.test_loop import toy_config, read_state
from diffusion.train.loop import train
config = toy_config(**{{"training.batch_size": 32}})
f8 = train(config, {str(tmp_path / 'd8')!r}, progress=False)
f1 = train(config, {str(tmp_path / 'd1')!r}, progress=False, devices=jax.devices()[:1])
_, p8, e8 = read_state({str(tmp_path / 'd8')!r}, config)
_, p1, e1 = read_state({str(tmp_path / 'd1')!r}, config)
err = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(p8), jax.tree.leaves(p1)))
# The 8-device checkpoints resume on 1 device (another topology): no restart from scratch.
longer = toy_config(**{{"training.batch_size": 32, "training.num_train_steps": 12}})
f = train(longer, {str(tmp_path / 'd8')!r}, progress=False, devices=jax.devices()[:1])
import os
assert not any(n.startswith("unreadable") for n in os.listdir({str(tmp_path / 'd8' / 'checkpoints')!r}))
print(json.dumps(dict(loss8=f8["loss"], loss1=f1["loss"], max_param_diff=err, resumed=f["step"])))
"""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       env=env, cwd=REPO, timeout=300)
  assert res.returncode == 0, stderr_tail(res.stderr)
  out = json.loads(res.stdout.strip().splitlines()[-1])
  np.testing.assert_allclose(out["loss8"], out["loss1"], rtol=1e-5)
  assert out["max_param_diff"] < 1e-5
  assert out["resumed"] == 12


def test_vae_trains_and_resumes_bit_exactly(tmp_path):
  from diffusion.train.loop import train  # pylint: disable=import-outside-toplevel
  config = tiny_config()
  final = train(config, str(tmp_path / "straight"), progress=False)
  assert final["step"] == 40 and np.isfinite(final["loss"]) and final["kl"] > 0
  assert final["loss"] == pytest.approx(final["recon"] + final["kl"], rel=1e-5)   # beta = 1
  train(tiny_config(**{"training.num_train_steps": 20}), str(tmp_path / "resumed"),
        progress=False)
  train(config, str(tmp_path / "resumed"), progress=False)
  a, b = read_state(str(tmp_path / "straight"), config), read_state(str(tmp_path / "resumed"),
                                                                     config)
  assert a[0] == b[0] == 40
  assert_trees_equal(a[1], b[1])
  rows = [json.loads(l) for l in open(tmp_path / "resumed" / "metrics.jsonl")]
  assert [r["step"] for r in rows] == [10, 20, 30, 40]


# ---- checkpoints: fallback, retention, refused resumes --------------------------------------


def test_corrupt_latest_checkpoint_falls_back(tmp_path, caplog):
  workdir = str(tmp_path / "run")
  train(toy_config(), workdir, progress=False)  # checkpoints at 4 and 8
  for f in glob.glob(os.path.join(workdir, "checkpoints", "8", "**", "d", "*"), recursive=True):
    with open(f, "wb") as fh:
      fh.write(b"not a checkpoint")
  config = toy_config(**{"training.num_train_steps": 12})
  with caplog.at_level("WARNING"):
    final = train(config, workdir, progress=False)
  assert final["step"] == 12
  assert any("unreadable" in r.getMessage() for r in caplog.records)
  # The unreadable checkpoint was moved aside, not deleted.
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "unreadable_8"))
  # The resumed run redid steps 5..8 from checkpoint 4: same as a straight 12-step run.
  train(config, str(tmp_path / "straight"), progress=False)
  assert_trees_equal(read_state(workdir, config)[1], read_state(str(tmp_path / "straight"),
                                                                config)[1])


def test_retention_keeps_the_good_checkpoint_and_moves_bad_ones_aside(tmp_path):
  """75 good, 80 and 175 corrupt, an empty 300/: the run resumes from 75, keeps it, and
  moves 80, 175 and 300 aside instead of counting them against keep_checkpoints."""
  workdir = str(tmp_path / "run")
  cfg = toy_config(**{"training.num_train_steps": 75, "training.checkpoint_every": 25,
                      "training.log_every": 25, "training.keep_checkpoints": 3})
  train(cfg, workdir, progress=False)
  ckdir = os.path.join(workdir, "checkpoints")
  assert saved_steps(workdir) == [25, 50, 75]
  for bad in (80, 175):
    shutil.copytree(os.path.join(ckdir, "75"), os.path.join(ckdir, str(bad)))
    for f in glob.glob(os.path.join(ckdir, str(bad), "**", "d", "*"), recursive=True):
      with open(f, "wb") as fh:
        fh.write(b"corrupt")
  os.makedirs(os.path.join(ckdir, "300"))
  more = toy_config(**{"training.num_train_steps": 100, "training.checkpoint_every": 25,
                       "training.log_every": 25, "training.keep_checkpoints": 3})
  final = train(more, workdir, progress=False)
  assert final["step"] == 100
  assert saved_steps(workdir) == [50, 75, 100]
  names = sorted(os.listdir(ckdir))
  assert "unreadable_80" in names and "unreadable_175" in names
  assert "300" not in names and "80" not in names and "175" not in names


def test_checkpoint_of_other_config_is_a_clear_error(tmp_path):
  workdir = str(tmp_path / "run")
  train(toy_config(), workdir, progress=False)
  bigger = toy_config(**{"model.hidden_dims": (64, 64), "training.num_train_steps": 12})
  with pytest.raises(ConfigError, match="does not match this config"):
    train(bigger, workdir, progress=False)


def test_refused_resume_changes_nothing(tmp_path):
  w = str(tmp_path / "w")
  train(toy_config(), w, progress=False)
  before = {n: open(os.path.join(w, n), "rb").read() for n in os.listdir(w)
            if os.path.isfile(os.path.join(w, n))}
  with pytest.raises(ConfigError):
    train(toy_config(**{"model.hidden_dims": (64, 64)}), w, progress=False)
  after = {n: open(os.path.join(w, n), "rb").read() for n in os.listdir(w)
           if os.path.isfile(os.path.join(w, n)) and n != ".lock"}
  before.pop(".lock", None)
  assert after == before


# ---- NaN ------------------------------------------------------------------------------------


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  workdir = str(tmp_path / "run")
  train(toy_config(), workdir, progress=False)
  good = read_state(workdir, toy_config())
  bad = toy_config(**{"optim.lr": 1e38, "optim.warmup_steps": 0,
                      "training.num_train_steps": 16})
  with pytest.raises(NonFiniteLossError, match=r"at step (8|9|10|11)\b"):
    train(bad, workdir, progress=False)
  ckpt = checkpoints.Checkpointer(workdir)
  assert ckpt.steps() == [4, 8]
  ckpt.close()
  after = read_state(workdir, toy_config())
  assert after[0] == 8
  assert_trees_equal(good[1], after[1])


def test_nan_in_a_fresh_run_does_not_claim_a_checkpoint(tmp_path):
  from diffusion.train.loop import NonFiniteLossError  # pylint: disable=import-outside-toplevel
  bad = toy_config(**{"optim.lr": 1e38, "optim.warmup_steps": 0})
  with pytest.raises(NonFiniteLossError, match="no checkpoint had been written yet"):
    train(bad, str(tmp_path / "run"), progress=False)


# ---- signals: saved and reported ------------------------------------------------------------


def test_signal_in_training_saves_and_reports_interrupted(tmp_path, monkeypatch):
  original = metric_writers.MetricWriter.write_scalars

  def write_then_signal(self, step, scalars):
    original(self, step, scalars)
    if step == 2:
      os.kill(os.getpid(), signal.SIGINT)

  monkeypatch.setattr(metric_writers.MetricWriter, "write_scalars", write_then_signal)
  final = train(toy_config(), str(tmp_path / "w"), progress=False)
  assert final["interrupted"] == "SIGINT" and final["step"] == 2
  assert os.path.isdir(tmp_path / "w" / "checkpoints" / "2")


def test_signal_during_samples_saves_that_step_and_skips_the_rest(tmp_path, monkeypatch):
  from diffusion.train import loop
  calls = []

  def samples_then_signal(m, prefix, sample_fn, ema_params, step, chain_bar):
    calls.append(step)
    os.kill(os.getpid(), signal.SIGTERM)

  monkeypatch.setattr(loop, "_write_grid", samples_then_signal)
  config = toy_config(**{"training.sample_every": 2, "training.checkpoint_every": 8})
  final = train(config, str(tmp_path / "w"), progress=False)
  assert final["interrupted"] == "SIGTERM" and final["step"] == 2 and calls == [2]
  assert os.path.isdir(tmp_path / "w" / "checkpoints" / "2")


def test_signal_at_the_last_step_still_reports_interrupted(tmp_path, monkeypatch):
  original = metric_writers.MetricWriter.write_scalars

  def write_then_signal(self, step, scalars):
    original(self, step, scalars)
    if step == 8:
      os.kill(os.getpid(), signal.SIGINT)

  monkeypatch.setattr(metric_writers.MetricWriter, "write_scalars", write_then_signal)
  final = train(toy_config(), str(tmp_path / "w"), progress=False)
  assert final["interrupted"] == "SIGINT" and final["step"] == 8
  assert os.path.isdir(tmp_path / "w" / "checkpoints" / "8")


def test_a_signal_taken_before_training_stops_it_after_one_call(tmp_path, monkeypatch):
  """A reproduction's handler took a signal (its KeyboardInterrupt swallowed by a library
  callback) while the data loaded: training stops after its first call, saved."""
  from diffusion.train import loop
  monkeypatch.setattr(loop, "PENDING_STOP", ["SIGTERM"])
  final = train(toy_config(), str(tmp_path / "w"), progress=False)
  assert final["interrupted"] == "SIGTERM" and final["step"] < 8
  assert os.path.isdir(tmp_path / "w" / "checkpoints" / str(final["step"]))


# ---- workdirs the system refuses ------------------------------------------------------------


@pytest.mark.parametrize("name", ["x" * 300, "/".join(["d" * 200] * 30)])
def test_workdir_names_the_system_refuses_are_one_line(tmp_path, name):
  with pytest.raises(ConfigError, match="cannot be created"):
    train(toy_config(), str(tmp_path / "sub" / name), progress=False)
  assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only folders")
def test_read_only_workdir_is_one_line(tmp_path):
  w = tmp_path / "w"
  w.mkdir()
  w.chmod(0o500)
  try:
    with pytest.raises(ConfigError, match="cannot write"):
      train(toy_config(), str(w), progress=False)
  finally:
    w.chmod(0o700)
  assert os.listdir(w) == []


# ---- a model without parameters -------------------------------------------------------------


def test_analytic_model_is_a_run_at_step_0(tmp_path, capsys):
  import diffusion
  import numpy as np
  w = str(tmp_path / "w")
  final = train(toy_config(**{"model.name": "analytic"}), w, progress=False)
  assert final == {"step": 0}
  assert "nothing to train" in capsys.readouterr().out
  assert os.path.isfile(os.path.join(w, "config.json"))
  run = diffusion.load(w)
  x = run.sample(8, seed=0)
  assert np.asarray(x).shape == (8, 2) and np.isfinite(np.asarray(x)).all()
  assert train(toy_config(**{"model.name": "analytic"}), w, progress=False) == {"step": 0}


# ---- sample grids: announced, with progress, and where they are -----------------------------


def test_grids_are_announced_and_the_last_line_says_where_the_newest_is(tmp_path, capsys):
  from diffusion.train.loop import train
  from tests.train.test_loop import toy_config
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
  from tests.train.test_loop import toy_config
  train(toy_config(), str(tmp_path / "w"), progress=False)   # toy_mixture: sample_every=0
  lines = capsys.readouterr().out.strip().splitlines()
  assert not any(l.startswith(("sampling ", "wrote ")) for l in lines)
  assert lines[-1].startswith("done: ") and lines[-1].endswith(f"workdir {tmp_path / 'w'}")


def test_grid_chain_bar_with_progress(tmp_path, capsys):
  from diffusion.train.loop import train
  from tests.train.test_loop import toy_config
  # training.grid_method="": the grids take config.sampling (the 100-level ancestral chain).
  train(toy_config(**{"training.sample_every": 8, "training.grid_method": ""}),
        str(tmp_path / "w"), progress=True)
  out, err = capsys.readouterr()
  assert "sampling 64 with ancestral, 100 steps" in out
  assert "sampling:" in err and "/100" in err   # the chain's own bar, on stderr


# ---- signals while a save or a call is in progress; the log's interval mean -----------------


def test_a_signal_during_a_save_lets_the_save_finish(tmp_path, monkeypatch):
  """Two signals while a checkpoint is written: the checkpoint is finished (a cut one would
  be lost and leave orbax's temporary folder), then the loop stops there."""
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


def test_log_rows_hold_the_interval_mean_loss(tmp_path):
  """``loss_mean`` of a row is the mean of every step's loss since the previous row (the
  same run logged at every step gives them; training is deterministic), ``loss`` stays
  the last step's."""
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


# A signal whose handler runs inside a weakref callback: Python cannot raise the handler's
# KeyboardInterrupt there, and prints it under the command's lines (CI saw this in a grid
# interrupted as it ended). The signal is sent from the callback itself, so its handler
# runs at the callback's next instruction. argv: the handler (train.py's ``interrupt``, or
# the loop's while it runs a sample grid), then the unraisable hook (ours, or Python's).
SWALLOWED = """
import os, signal, sys, time, weakref
from diffusion.train import loop, stopping
handler, hook = sys.argv[1:]
if hook == "ours":
  sys.unraisablehook = loop.drop_swallowed_interrupts

class Thing:
  pass

def died(ref):
  os.kill(os.getpid(), signal.SIGINT)
  for _ in range(10000):
    pass

thing = Thing()
ref = weakref.ref(thing, died)
if handler == "interrupt":
  signal.signal(signal.SIGINT, loop.interrupt)
  del thing
  print(loop.PENDING_STOP)
else:
  with stopping.StopSignal([]) as stop:
    stop.phase = stopping.DUTY
    try:
      del thing
      time.sleep(10)
      print("the grid went on")
    except stopping.DutyStopped:
      print("the grid stopped; received", stop.received)
"""


@pytest.mark.parametrize("handler, hook, printed", [
    ("interrupt", "ours", "['SIGINT']"),        # recorded: the loop stops after one call
    ("interrupt", "python's", "['SIGINT']"),
    ("duty", "ours", "the grid stopped; received SIGINT"),   # "stop now": sent again
])
def test_a_signal_swallowed_by_a_library_callback_is_acted_on_and_not_printed(
    handler, hook, printed):
  res = subprocess.run([sys.executable, "-c", SWALLOWED, handler, hook], cwd=REPO,
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=REPO))
  assert res.returncode == 0 and res.stdout.strip() == printed, stderr_tail(res.stderr)
  if hook == "ours":
    assert res.stderr == ""
  else:                   # Python's own hook: the "Exception ignored" traceback
    assert "Exception ignored" in res.stderr and "KeyboardInterrupt" in res.stderr

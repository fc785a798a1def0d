"""Training loop: exact resume (also after kill -9), multi-device equivalence,
checkpoint fallback, SIGTERM, NaN handling, config validation, CLI."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import base
from diffusion import families
from diffusion.io import checkpoints
from diffusion.config import checks as config_check
from diffusion.train import optim as optimizers
from diffusion.errors import ConfigError
from diffusion.train.loop import NonFiniteLossError, initial_state, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
  optimizer = optimizers.make_optimizer(config.optim)
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


def test_the_family_describes_its_sampling_and_whether_it_trains():
  """What sample.py names its folder, console line and meta.json by comes from the
  family: the chain's length (0 = every level), the sampler's named options (DDIM's η);
  a model without parameters is not trained (the loop asks ``trainable`` only)."""
  family = families.make_family(config_check.validate(toy_config(**{
      "sampling.method": "ddim", "sampling.num_steps": 10, "sampling.eta": 0.5})))
  record = family.sampling_record(steps_from="--steps")
  assert (record.sampler, record.steps, record.name, record.options) == (
      "ddim", 10, "ddim_s10_eta0.5", {"eta": 0.5})
  assert record.phrase == "10 steps of 100 levels (--steps=10)"
  every = family.sampling_record(family.config.sampling.replace(method="ancestral",
                                                                num_steps=0))
  assert (every.sampler, every.steps, every.name, every.options) == (
      "ancestral", 100, "ancestral_s100", {})
  assert every.phrase == "100 steps of 100 levels (config.sampling.num_steps=0, 0 = every level)"
  assert family.trainable and family.write_extras({}, "unused", None) == []
  from configs.ncsn import toy_mixture  # pylint: disable=import-outside-toplevel
  langevin = families.make_family(config_check.validate(toy_mixture.get_config()))
  assert langevin.sampling_record().phrase == (
      "10 steps of 10 levels (config.sampling.num_steps=0, 0 = every level), "
      f"{langevin.config.sampling.n_steps_each} Langevin steps each")
  analytic = families.make_family(config_check.validate(toy_config(**{"model.name": "analytic"})))
  assert not analytic.trainable and analytic.init_params(jax.random.PRNGKey(0)) == {}


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


def _run_cli(args, env=None, **kw):
  env = dict(os.environ, **(env or {}))
  return subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *args],
                        capture_output=True, text=True, cwd=REPO, env=env, **kw)


TOY_FLAGS = [
    "--config=configs/ddpm/toy_mixture.py", "--progress=false",
]


@pytest.mark.slow
def test_kill9_then_resume_is_bit_identical(tmp_path):
  """kill -9 between checkpoints: the resume is bit-identical to a straight run, and
  metrics.jsonl / TensorBoard hold every logged step once (the killed run's rows after
  its last checkpoint are dropped; its TensorBoard scalars were flushed up to the kill)."""
  from test_workdir import read_tensorboard_scalars  # pylint: disable=import-outside-toplevel
  from diffusion.io.metric_writers import read_metrics  # pylint: disable=import-outside-toplevel
  steps = ["--config.training.num_train_steps=400", "--config.training.checkpoint_every=100",
           "--config.training.log_every=20"]
  straight = tmp_path / "straight"
  res = _run_cli(TOY_FLAGS + steps + [f"--workdir={straight}"], timeout=300)
  assert res.returncode == 0, res.stderr[-2000:]

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
  assert res.returncode == 0, res.stderr[-2000:]
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
  assert res.returncode == 0, res.stderr[-2000:]
  assert "resumed from step 4" in res.stdout
  lines = res.stderr.strip().splitlines()
  assert "Traceback" not in res.stderr and "never retrieved" not in res.stderr, res.stderr[-3000:]
  assert len(lines) == 2, res.stderr[-3000:]
  assert "checkpoint 8 is unreadable" in lines[0] and "unreadable_8" in lines[1]


def test_checkpoint_of_other_config_is_a_clear_error(tmp_path):
  workdir = str(tmp_path / "run")
  train(toy_config(), workdir, progress=False)
  bigger = toy_config(**{"model.hidden_dims": (64, 64), "training.num_train_steps": 12})
  with pytest.raises(ConfigError, match="does not match this config"):
    train(bigger, workdir, progress=False)


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


def test_multi_device_matches_single_device(tmp_path):
  """8 simulated CPU devices give the same loss and parameters as 1 device."""
  script = f"""
import sys, json
sys.path.insert(0, {REPO!r})
sys.path.insert(0, {os.path.join(REPO, 'tests')!r})
import jax, numpy as np
assert jax.device_count() == 8, jax.devices()
from test_training import toy_config, read_state
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
  assert res.returncode == 0, res.stderr[-3000:]
  out = json.loads(res.stdout.strip().splitlines()[-1])
  np.testing.assert_allclose(out["loss8"], out["loss1"], rtol=1e-5)
  assert out["max_param_diff"] < 1e-5
  assert out["resumed"] == 12


INVALID = [
    ("diffusion.variant", "vdm", "diffusion.variant"),
    ("diffusion.schedule", "cosinus", "diffusion.schedule"),
    ("diffusion.num_timesteps", 0, "diffusion.num_timesteps"),
    ("diffusion.loss", "l1", "diffusion.loss"),
    ("diffusion.var_type", "learned", "diffusion.var_type"),
    ("data.dataset", "imagenet21k", "data.dataset"),
    ("model.name", "transformer", "model.name"),
    ("model.attn_resolutions", (7,), "model.attn_resolutions"),
    ("model.out_channels", 5, "model.out_channels"),
    ("model.dtype", "float16", "model.dtype"),
    ("optim.lr", -1e-4, "optim.lr"),
    ("optim.optimizer", "sgd", "optim.optimizer"),
    ("training.num_train_steps", 0, "training.num_train_steps"),
    ("training.batch_size", 100, "training.batch_size"),  # 100 % 8 devices
    ("training.ema_decay", 1.5, "training.ema_decay"),
    ("sampling.method", "euler", "sampling.method"),
    ("data.image_size", 36, "data.image_size"),  # not divisible by 2^3
]


# Valid alone, invalid together: (overrides, field named in the message).
INVALID_COMBINATIONS = [
    ({"sampling.var_type": "bogus"}, "sampling.var_type"),
    ({"sampling.num_steps": 5000}, "sampling.num_steps"),
    ({"sampling.method": "annealed_langevin", "sampling.num_steps": 10}, "sampling.num_steps"),
    ({"diffusion.loss": "hybrid"}, "diffusion.loss"),            # fixedlarge variance
    ({"model.name": "mlp"}, "model.name"),                       # on CIFAR-10 images
    ({"data.dataset": "swiss_roll", "data.num_channels": 2}, "model.name"),  # U-Net on 2-D
    ({"diffusion.schedule": "jsd", "diffusion.loss": "kl", "diffusion.var_type":
      "learned_range", "model.out_channels": 6}, "diffusion.schedule"),
    ({"diffusion.loss": "kl", "data.uniform_dequantization": True}, "diffusion.decoder"),
    ({"diffusion.variant": "ncsn", "diffusion.schedule": "geometric",
      "diffusion.loss": "kl"}, "diffusion.loss"),
]


def _set(config, overrides):
  for key, value in overrides.items():
    section, name = key.split(".")
    config[section][name] = value
  return config


@pytest.mark.parametrize("key,value,field", INVALID, ids=[i[0] for i in INVALID])
def test_invalid_config_names_the_field(key, value, field):
  config = _set(base.get_config("ddpm"), {key: value})
  with pytest.raises(ConfigError) as info:
    config_check.validate(config, num_devices=8)
  message = str(info.value)
  assert field in message and "\n" not in message


@pytest.mark.parametrize("overrides,field", INVALID_COMBINATIONS,
                         ids=[",".join(o) for o, _ in INVALID_COMBINATIONS])
def test_invalid_combination_names_the_field(overrides, field):
  config = _set(base.get_config("ddpm"), overrides)
  with pytest.raises(ConfigError) as info:
    config_check.validate(config, num_devices=1)
  message = str(info.value)
  assert field in message and "\n" not in message


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
  assert len(lines) == 1 and lines[0].startswith(start), res.stderr[-2000:]


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

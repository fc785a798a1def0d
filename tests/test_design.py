"""The seams of the code: typed configs with one home per default, a narrow pure train
step, the optimizer's hyperparameters in its state, and a package that installs."""

import dataclasses
import pathlib
import re
import subprocess
import sys
import zipfile

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import diffusion
from configs import base
from diffusion import config as C
from diffusion.train import optim as optimizers
from diffusion.errors import ConfigError
from diffusion.train.step import create_train_state, scan_steps, train_step

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "diffusion"


# ---- typed configs: each default once ---------------------------------------------------


def test_base_config_is_the_dataclass_defaults():
  assert base.get_config("ddpm").to_dict() == C.DiffusionRunConfig().to_dict()
  for variant, preset in C.VARIANT_PRESETS.items():
    built = base.get_config(variant).to_dict()
    assert built == C.default_config(variant).to_dict()
    # A variant differs from its family's dataclass defaults exactly in its preset's fields.
    defaults = C.RUN_CONFIGS[preset.get("family", "diffusion")]().to_dict()
    preset = {k: v for k, v in preset.items() if k != "family"}
    changed = {(s, f) for s in built if isinstance(built[s], dict)
               for f in built[s] if built[s][f] != defaults[s][f]}
    assert changed == {(s, f) for s, fields in preset.items() for f in fields
                       if fields[f] != defaults[s][f]}


def test_no_second_table_of_defaults_in_the_package():
  for path in PACKAGE.rglob("*.py"):
    text = path.read_text()
    assert "_DEFAULTS" not in text, path
    assert "get_field(" not in text, path


def test_every_field_has_a_doc_and_a_valid_default():
  docs = C.DiffusionRunConfig.field_docs()
  assert all(docs.values()), [k for k, v in docs.items() if not v]
  assert "diffusion.num_timesteps" in docs and "eval.bpd.every" in docs


@pytest.mark.parametrize("call, key, suggestion", [
    (lambda cfg: diffusion.make_process(cfg), "num_timestep", "num_timesteps"),
    (lambda cfg: diffusion.make_model(cfg), "ch_mul", "ch_mult"),
    (lambda cfg: diffusion.make_source(cfg), "datset", "dataset"),
    (lambda cfg: diffusion.sample(lambda x, t: x, diffusion.make_process(), (2, 2),
                                  jax.random.PRNGKey(0), cfg), "num_step", "num_steps"),
])
@pytest.mark.parametrize("kind", ["dict", "ConfigDict"])
def test_unknown_key_is_one_line_with_the_closest_name(call, key, suggestion, kind):
  cfg = {key: 50}
  if kind == "ConfigDict":
    cfg = ml_collections.ConfigDict(cfg)
  with pytest.raises(ConfigError) as info:
    call(cfg)
  message = str(info.value)
  assert key in message and f"did you mean {suggestion!r}" in message and "\n" not in message


def test_issue_example_misspelt_key_no_longer_falls_back():
  with pytest.raises(ConfigError, match=r"diffusion\.num_timestep .*'num_timesteps'"):
    diffusion.make_process({"schedule": "cosine", "num_timestep": 50})
  assert diffusion.make_process({"schedule": "cosine", "num_timesteps": 50}).num_timesteps == 50


def test_sections_accept_dict_configdict_and_dataclass():
  as_dict = {"variant": "ncsn", "num_timesteps": 5, "sigma_max": 2.0}
  typed = C.DiffusionConfig.parse(as_dict)
  for cfg in (as_dict, ml_collections.ConfigDict(as_dict), typed):
    p = diffusion.make_process(cfg)
    np.testing.assert_allclose(np.asarray(p.sigmas), np.geomspace(0.01, 2.0, 5), rtol=1e-6)
  with pytest.raises(dataclasses.FrozenInstanceError):
    typed.num_timesteps = 7  # sections are frozen


def test_processes_are_asked_what_they_are_not_tested():
  pattern = re.compile(r"hasattr\(process|isinstance\(process|variant ==")
  offenders = [str(p) for p in PACKAGE.rglob("*.py") if p.name != "processes.py"
               and pattern.search(p.read_text())]
  assert not offenders
  assert diffusion.make_process({"variant": "ddpm"}).kind == "vp"
  assert diffusion.make_process({"variant": "ncsn"}).kind == "ve"


# ---- the narrow, pure train step -----------------------------------------------------------


def test_train_step_runs_on_a_hand_written_get_batch_without_a_config():
  """Least squares y = x·w with plain SGD: one step equals the hand computation."""
  rng = np.random.default_rng(0)
  xs = rng.normal(size=(64, 3)).astype(np.float32)
  ys = xs @ np.array([1.0, -2.0, 0.5], np.float32)
  data = {"x": jnp.asarray(xs), "y": jnp.asarray(ys)}

  def get_batch(data, key):                          # the caller's own sampling rule
    idx = jax.random.randint(key, (8,), 0, 64)
    return data["x"][idx], data["y"][idx]

  def loss_fn(params, batch, key, hparams):
    del key, hparams
    x, y = batch
    return jnp.mean((x @ params["w"] - y) ** 2), {}

  lr, decay = 0.1, 0.9
  params = {"w": jnp.zeros(3)}
  state = create_train_state(params, optax.sgd(lr), seed=3, ema_decay=decay)
  step = jax.jit(lambda s, d: train_step(s, d, loss_fn=loss_fn, optimizer=optax.sgd(lr),
                                         get_batch=get_batch))
  w, ema = np.zeros(3), np.zeros(3)
  for i in range(3):
    data_key, _ = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(3), i))
    x, y = (np.asarray(a, np.float64) for a in get_batch(data, data_key))
    grad = 2 * x.T @ (x @ w - y) / len(y)
    w = w - lr * grad
    d = 0.0 if i == 0 else decay                      # the EMA copies at step 0
    ema = d * ema + (1 - d) * w
    state, metrics = step(state, data)
    np.testing.assert_allclose(state.params["w"], w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.ema_params["w"], ema, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["grad_norm"], np.linalg.norm(grad), rtol=1e-5)
  assert int(state.step) == 3 and "lr" not in metrics   # optax.sgd keeps no schedule


def test_scanned_steps_equal_single_steps():
  def get_batch(data, key):
    return data + jax.random.normal(key, data.shape)

  def loss_fn(params, batch, key, hparams):
    del key, hparams
    return jnp.mean((batch - params["m"]) ** 2), {}

  opt = optimizers.make_optimizer({"lr": 0.05, "warmup_steps": 2})
  state = create_train_state({"m": jnp.zeros(4)}, opt, seed=0, ema_decay=0.5)
  one = jax.jit(lambda s, d: train_step(s, d, loss_fn=loss_fn, optimizer=opt,
                                        get_batch=get_batch))
  four = jax.jit(scan_steps(lambda s, d: train_step(s, d, loss_fn=loss_fn, optimizer=opt,
                                                    get_batch=get_batch), 4, False))
  data = jnp.arange(4.0)
  a = state
  for _ in range(4):
    a, _ = one(a, data)
  b, metrics = four(state, data)
  np.testing.assert_allclose(a.params["m"], b.params["m"], rtol=1e-6)
  np.testing.assert_allclose(metrics["lr"], 0.05)      # step 3 is past the warm-up


# ---- optimizer hyperparameters live in the state ---------------------------------------------


@pytest.mark.parametrize("cfg, reference", [
    (dict(lr=2e-4, warmup_steps=5000),
     optax.join_schedules([optax.linear_schedule(0.0, 2e-4, 5000),
                           optax.constant_schedule(2e-4)], [5000])),
    (dict(lr=1e-3, warmup_steps=0, lr_schedule="exponential", decay_steps=500, decay_rate=0.1,
          min_lr=1e-4),
     optax.exponential_decay(1e-3, 500, 0.1, end_value=1e-4)),
    (dict(lr=1e-3, warmup_steps=100, lr_schedule="cosine", decay_steps=900, min_lr=1e-5),
     optax.join_schedules([optax.linear_schedule(0.0, 1e-3, 100),
                           optax.cosine_decay_schedule(1e-3, 900, alpha=1e-2)], [100])),
])
def test_learning_rate_schedules_match_optax(cfg, reference):
  hyper = {k: jnp.float32(v) for k, v in optimizers.hyperparameters(cfg).items()}
  for step in (0, 1, 50, 99, 100, 101, 499, 500, 999, 1000, 1500, 6000):
    # float32 on both sides: relative 2e-5, or 1e-6 of the peak rate near zero.
    np.testing.assert_allclose(optimizers.scheduled_learning_rate(hyper, step),
                               reference(step), rtol=2e-5, atol=1e-6 * cfg["lr"])


def test_a_population_differs_in_learning_rate_under_vmap():
  """Two optimizer states with other hyperparameters share one vmapped update."""
  opt = optimizers.make_optimizer({"lr": 1e-2, "warmup_steps": 0, "grad_clip": 0.0})
  params = {"w": jnp.ones(3)}
  states = [opt.init(params), optimizers.set_hyperparameters(
      opt.init(params), {"lr": 1e-1, "warmup_steps": 0, "grad_clip": 0.5})]
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *states)
  grads = {"w": jnp.stack([jnp.full(3, 2.0), jnp.full(3, 2.0)])}
  updates, _ = jax.vmap(opt.update)(grads, stacked, jax.tree.map(lambda p: jnp.stack([p, p]),
                                                                  params))
  u = np.asarray(updates["w"])
  # Adam's first step moves every coordinate by -lr (clipping does not change the sign).
  np.testing.assert_allclose(u[0], -1e-2, rtol=1e-4)
  np.testing.assert_allclose(u[1], -1e-1, rtol=1e-4)


def test_clip_is_off_at_zero_and_matches_optax_otherwise():
  g = {"a": jnp.array([3.0, 4.0])}
  off, _ = optimizers.clip_by_global_norm(jnp.float32(0.0)).update(g, optax.EmptyState())
  np.testing.assert_allclose(off["a"], [3.0, 4.0])
  ours, _ = optimizers.clip_by_global_norm(jnp.float32(1.0)).update(g, optax.EmptyState())
  ref, _ = optax.clip_by_global_norm(1.0).update(g, optax.EmptyState())
  np.testing.assert_allclose(ours["a"], ref["a"], rtol=1e-6)


# ---- the package installs --------------------------------------------------------------------


@pytest.mark.slow
def test_package_builds_a_wheel_with_both_packages(tmp_path):
  res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                        "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
                       capture_output=True, text=True, timeout=300)
  if res.returncode and "No module named" in res.stderr and "setuptools" in res.stderr:
    pytest.skip("setuptools is not installed in this environment")
  assert res.returncode == 0, res.stderr[-2000:]
  wheel = next(tmp_path.glob("diffusion-*.whl"))
  names = zipfile.ZipFile(wheel).namelist()
  assert "diffusion/config/__init__.py" in names and "configs/base.py" in names
  assert "diffusion/models/unet.py" in names and "diffusion/data/sources.py" in names
  # packages.find ships a folder only with its __init__.py: the reproductions need theirs.
  assert "diffusion/reproduce/registry.py" in names
  assert "diffusion/reproduce/papers/ddim.py" in names


def test_config_reference_is_current_and_lists_every_field():
  """docs/config.md is what docs/make_config_reference.py writes now (never stale)."""
  sys.path.insert(0, str(REPO / "docs"))
  import make_config_reference  # pylint: disable=import-outside-toplevel
  doc = (REPO / "docs" / "config.md").read_text()
  assert doc == make_config_reference.text(), "run: python docs/make_config_reference.py"
  for run_cls in (C.DiffusionRunConfig, C.VAERunConfig):
    missing = [path for path in run_cls.field_docs() if f"`{path}`" not in doc]
    assert not missing
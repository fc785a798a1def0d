"""diffusion/train/population.py: population fields do not change the compiled program,
and vmapped populations equal sequential runs (also on 8 devices)."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusion import families, sweeps
from diffusion.config import POPULATION_FIELDS, program_key
from diffusion.io.metric_writers import read_metrics
from diffusion.paths import REPO

from tests.conftest import stderr_tail
from tests.sweeps.test_grid import TOY_FILE, toy_file_config
from tests.train.test_loop import read_state, saved_steps, toy_config



# ---- population fields do not change the program --------------------------------------------


# A valid other value (or set of values) for every population field.
POPULATION_CHANGES = [
    {"training.seed": 5}, {"training.ema_decay": 0.5}, {"optim.lr": 3e-3},
    {"optim.warmup_steps": 7}, {"optim.beta1": 0.5}, {"optim.beta2": 0.9}, {"optim.eps": 1e-6},
    {"optim.grad_clip": 0.0},
    {"optim.lr_schedule": "cosine", "optim.decay_steps": 100, "optim.min_lr": 1e-5},
    {"optim.lr_schedule": "exponential", "optim.decay_steps": 50, "optim.decay_rate": 0.5},
]


def _step_program(config):
  """The jaxpr of one train step of ``config``: constants baked in would show here."""
  from diffusion.train import optim  # pylint: disable=import-outside-toplevel
  from diffusion.data import make_source  # pylint: disable=import-outside-toplevel
  from diffusion.train.loop import initial_state  # pylint: disable=import-outside-toplevel
  from diffusion.train.step import train_step  # pylint: disable=import-outside-toplevel
  family = families.make_family(config)
  opt = optim.make_optimizer(config.optim)
  source = make_source(config.data)
  state = jax.eval_shape(lambda: initial_state(family, opt))
  fn = lambda s: train_step(s, {}, loss_fn=family.loss_fn, optimizer=opt,  # noqa: E731
                            get_batch=source.batch_fn(config.training.batch_size))
  return str(jax.make_jaxpr(fn)(state))


def test_population_fields_do_not_change_the_program():
  """Configs that differ only in population fields have one program key and the same
  compiled step (the values are arrays of the state); a shape change splits a group."""
  base = toy_config()
  program = _step_program(base)
  changed = set()
  for change in POPULATION_CHANGES:
    other = toy_config(**change)
    assert program_key(other) == program_key(base), change
    assert _step_program(other) == program, change
    changed |= set(change)
  hybrid = toy_config(**{"diffusion.loss": "hybrid", "diffusion.var_type": "learned_range",
                         "diffusion.decoder": "gaussian", "model.out_channels": 4})
  hybrid2 = toy_config(**{"diffusion.loss": "hybrid", "diffusion.var_type": "learned_range",
                          "diffusion.decoder": "gaussian", "model.out_channels": 4,
                          "diffusion.hybrid_lambda": 0.1})
  assert _step_program(hybrid) == _step_program(hybrid2)
  changed.add("diffusion.hybrid_lambda")
  adamw = [toy_config(**{"optim.optimizer": "adamw", "optim.weight_decay": wd})
           for wd in (0.0, 0.1)]
  assert _step_program(adamw[0]) == _step_program(adamw[1])
  changed.add("optim.weight_decay")
  from configs.vae import digits  # pylint: disable=import-outside-toplevel
  vae = [digits.get_config() for _ in range(2)]
  vae[1].vae.kl_weight = 4.0
  assert program_key(vae[0]) == program_key(vae[1])
  jaxprs = []
  for cfg in vae:                      # the loss reads kl_weight from the state's hparams
    fam = families.make_family(cfg)
    assert "kl_weight" in fam.loss_hparams()
    x = jax.ShapeDtypeStruct((4, *fam.example_shape), jnp.float32)
    jaxprs.append(str(jax.make_jaxpr(fam.loss_fn)(
        fam.abstract_params(), x, jax.random.PRNGKey(0),
        {k: jnp.float32(v) for k, v in fam.loss_hparams().items()})))
  assert jaxprs[0] == jaxprs[1]
  changed.add("vae.kl_weight")
  assert changed == set(POPULATION_FIELDS)
  points = [{"config": toy_config(**{"optim.lr": lr, "model.hidden_dims": dims})}
            for lr in (1e-3, 2e-3) for dims in ((32, 32), (64,))]
  assert [len(g) for g in sweeps.groups(points)] == [2, 2]


# ---- vmapped populations --------------------------------------------------------------------


# log_every 4: 10 rows, as many as a short sweep point logs (grid.point_config).
VMAP_STEPS = {"training.num_train_steps": 40, "training.log_every": 4,
              "training.checkpoint_every": 20}
GRID = "optim.lr=5e-4,1e-3,2e-3,4e-3;training.seed=0,1"   # 4 learning rates x 2 seeds
# float32, different op order under vmap: |Δparam| of 40 Adam steps measured 3e-7.
POPULATION_ATOL = 2e-5


@pytest.mark.slow
def test_vmap_population_equals_sequential_points(tmp_path):
  cfg = toy_file_config(**VMAP_STEPS)
  sweeps.run_sweep(cfg, TOY_FILE, GRID, str(tmp_path / "vmap"), mode="vmap")
  sweeps.run_sweep(cfg, TOY_FILE, GRID, str(tmp_path / "seq"), mode="sequential")
  ledger = sweeps.read_ledger(str(tmp_path / "vmap"))
  assert [p["status"] for p in ledger["points"]] == ["done"] * 8
  for p in ledger["points"]:
    point_cfg = sweeps.apply_overrides(cfg, p["overrides"])
    s1, p1, e1 = read_state(str(tmp_path / "vmap" / p["name"]), point_cfg)
    s2, p2, e2 = read_state(str(tmp_path / "seq" / p["name"]), point_cfg)
    assert s1 == s2 == 40
    for a, b in zip(jax.tree.leaves((p1, e1)), jax.tree.leaves((p2, e2))):
      np.testing.assert_allclose(a, b, rtol=0, atol=POPULATION_ATOL)
    rows_v = read_metrics(str(tmp_path / "vmap" / p["name"]))
    rows_s = read_metrics(str(tmp_path / "seq" / p["name"]))
    assert [r["step"] for r in rows_v] == [r["step"] for r in rows_s] == list(range(4, 41, 4))
    assert saved_steps(tmp_path / "vmap" / p["name"]) == [20, 40]
    np.testing.assert_allclose([r["lr"] for r in rows_v], [r["lr"] for r in rows_s], rtol=1e-6)


@pytest.mark.slow
def test_vmap_on_8_devices_equals_1_device(tmp_path):
  script = f"""
import json, sys
sys.path.insert(0, {REPO!r})
import jax, numpy as np
assert jax.device_count() == 8
from tests.sweeps.test_grid import toy_file_config, TOY_FILE
from tests.train.test_population import VMAP_STEPS, GRID
from tests.train.test_loop import read_state
from diffusion import sweeps
from diffusion.train.population import train_population
cfg = toy_file_config(**VMAP_STEPS)
points = sweeps.prepare(cfg, TOY_FILE, GRID)
cfgs = [p["config"] for p in points]
train_population(cfgs, [{str(tmp_path)!r} + "/d8/" + p["name"] for p in points], progress=False)
train_population(cfgs, [{str(tmp_path)!r} + "/d1/" + p["name"] for p in points], progress=False,
                 devices=jax.devices()[:1])
err = 0.0
for p in points:
  _, a, _ = read_state({str(tmp_path)!r} + "/d8/" + p["name"], p["config"])
  _, b, _ = read_state({str(tmp_path)!r} + "/d1/" + p["name"], p["config"])
  err = max(err, max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(a),
                                                                   jax.tree.leaves(b))))
print(json.dumps({{"max_param_diff": err}}))
"""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                       cwd=REPO, timeout=600)
  assert res.returncode == 0, stderr_tail(res.stderr)
  assert json.loads(res.stdout.strip().splitlines()[-1])["max_param_diff"] < 1e-5

"""diffusion/train/step.py: the pure train step on a hand-written batch function (no
config), and K scanned steps equal to K single steps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffusion.train import optim
from diffusion.train.step import create_train_state, scan_steps, train_step


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

  opt = optim.make_optimizer({"lr": 0.05, "warmup_steps": 2})
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

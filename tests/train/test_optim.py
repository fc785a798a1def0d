"""diffusion/train/optim.py: learning-rate schedules against optax, hyperparameters in the
optimizer state (a population under vmap), and clipping."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from diffusion.train import optim


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
  hyper = {k: jnp.float32(v) for k, v in optim.hyperparameters(cfg).items()}
  for step in (0, 1, 50, 99, 100, 101, 499, 500, 999, 1000, 1500, 6000):
    # float32 on both sides: relative 2e-5, or 1e-6 of the peak rate near zero.
    np.testing.assert_allclose(optim.scheduled_learning_rate(hyper, step),
                               reference(step), rtol=2e-5, atol=1e-6 * cfg["lr"])


def test_a_population_differs_in_learning_rate_under_vmap():
  """Two optimizer states with other hyperparameters share one vmapped update."""
  opt = optim.make_optimizer({"lr": 1e-2, "warmup_steps": 0, "grad_clip": 0.0})
  params = {"w": jnp.ones(3)}
  states = [opt.init(params), optim.set_hyperparameters(
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
  off, _ = optim.clip_by_global_norm(jnp.float32(0.0)).update(g, optax.EmptyState())
  np.testing.assert_allclose(off["a"], [3.0, 4.0])
  ours, _ = optim.clip_by_global_norm(jnp.float32(1.0)).update(g, optax.EmptyState())
  ref, _ = optax.clip_by_global_norm(1.0).update(g, optax.EmptyState())
  np.testing.assert_allclose(ours["a"], ref["a"], rtol=1e-6)

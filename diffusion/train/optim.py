"""The optimizer, with every numeric hyperparameter held in its state.

``make_optimizer(config.optim)`` is global-norm clipping, then Adam / AdamW /
RMSProp, then the learning-rate schedule. It is wrapped in
``optax.inject_hyperparams``, so the learning rate, warm-up, decay, Adam β's, ε,
weight decay and the clipping norm are arrays in the optimizer state rather than
constants compiled into the step: a population of runs (``jax.vmap`` over train
states) can differ in any of them and still share one compiled program. Only the
optimizer's kind (which changes the state's structure) is static.

Learning rate at step s (all traced):
  s < W:          lr · s / W                               (DDPM code's linear warm-up)
  constant:       lr
  exponential:    max(lr · decay_rate^((s − W)/decay_steps), min_lr)   (DPM code)
  cosine:         min_lr + (lr − min_lr) · ½(1 + cos(π · min((s − W)/decay_steps, 1)))
"""

from typing import Any, Dict

import jax
import jax.numpy as jnp
import optax

from diffusion.config import LR_SCHEDULES, OptimConfig


def scheduled_learning_rate(hyperparams: Dict[str, Any], step) -> jax.Array:
  """The learning rate at ``step`` for the hyperparameters of :func:`make_optimizer`."""
  h = hyperparams
  step = jnp.asarray(step, jnp.float32)
  lr, warmup = h["learning_rate"], h["warmup_steps"]
  since = jnp.maximum(step - warmup, 0.0)
  decay_steps = jnp.maximum(h["decay_steps"], 1.0)
  exponential = jnp.maximum(lr * h["decay_rate"] ** (since / decay_steps), h["min_lr"])
  progress = jnp.minimum(since / decay_steps, 1.0)
  cosine = h["min_lr"] + (lr - h["min_lr"]) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
  code = {name: float(i) for i, name in enumerate(LR_SCHEDULES)}   # held as a float in the state
  after = jnp.select([h["lr_schedule"] == code["exponential"], h["lr_schedule"] == code["cosine"]],
                     [exponential, cosine], lr)
  return jnp.where(step < warmup, lr * step / jnp.maximum(warmup, 1.0), after)


def clip_by_global_norm(max_norm) -> optax.GradientTransformation:
  """optax's global-norm clipping, off when ``max_norm`` is 0 (which may be traced)."""

  def update(updates, state, params=None):
    del params
    norm = optax.global_norm(updates)
    keep = (max_norm <= 0) | (norm < max_norm)
    return jax.tree.map(lambda t: jnp.where(keep, t, (t / norm.astype(t.dtype)) * max_norm),
                        updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _transform(learning_rate, warmup_steps, lr_schedule, decay_steps, decay_rate, min_lr,
               b1, b2, eps, weight_decay, grad_clip, *, optimizer: str):
  h = dict(learning_rate=learning_rate, warmup_steps=warmup_steps, lr_schedule=lr_schedule,
           decay_steps=decay_steps, decay_rate=decay_rate, min_lr=min_lr)
  parts = [clip_by_global_norm(grad_clip)]
  if optimizer == "rmsprop":
    parts.append(optax.scale_by_rms(decay=b2, eps=eps))
  else:
    parts.append(optax.scale_by_adam(b1=b1, b2=b2, eps=eps))
  if optimizer == "adamw":
    parts.append(optax.add_decayed_weights(weight_decay))
  parts.append(optax.scale_by_learning_rate(lambda count: scheduled_learning_rate(h, count)))
  return optax.chain(*parts)


def hyperparameters(optim_cfg=None) -> Dict[str, float]:
  """The numeric hyperparameters of ``config.optim`` as they are held in the state."""
  o = OptimConfig.parse(optim_cfg)
  return dict(learning_rate=o.lr, warmup_steps=float(o.warmup_steps),
              lr_schedule=float(LR_SCHEDULES.index(o.lr_schedule)),
              decay_steps=float(o.decay_steps), decay_rate=o.decay_rate, min_lr=o.min_lr,
              b1=o.beta1, b2=o.beta2, eps=o.eps, weight_decay=o.weight_decay,
              grad_clip=o.grad_clip)


def make_optimizer(optim_cfg=None) -> optax.GradientTransformation:
  """Clipping -> Adam / AdamW / RMSProp -> schedule, hyperparameters in the state.

  Args:
    optim_cfg: ``config.optim`` (ConfigDict, dict or OptimConfig).
  """
  o = OptimConfig.parse(optim_cfg)
  return optax.inject_hyperparams(_transform, static_args=("optimizer",),
                                  hyperparam_dtype=jnp.float32)(
                                      optimizer=o.optimizer, **hyperparameters(o))


def set_hyperparameters(opt_state, optim_cfg) -> Any:
  """``opt_state`` with its hyperparameters replaced by ``config.optim``'s.

  A resumed run restores the optimizer state of its checkpoint; this makes a
  changed config (say a lower learning rate for fine-tuning) take effect.
  """
  fresh = hyperparameters(optim_cfg)
  hyper = {k: jnp.asarray(fresh[k], v.dtype) for k, v in opt_state.hyperparams.items()}
  return opt_state._replace(hyperparams=hyper)

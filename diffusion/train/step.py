"""The pure training step and the state it updates.

``train_step(state, data, *, loss_fn, optimizer, get_batch)`` is one update, a
pure function of its arguments (flax ``examples/imagenet`` style: the caller binds
the keyword arguments with ``functools.partial`` and jits it):

  key = fold_in(PRNGKey(seed), step) -> (data key, loss key)
  batch = get_batch(data, data key)               e.g. drawn from device arrays
  (loss, metrics), grads = value_and_grad(loss_fn)(params, batch, loss key, hparams)
  params <- optax update (clip, Adam, schedule: hyperparameters in opt_state)
  ema <- decay · ema + (1 − decay) · params       (copy at step 0, TF DDPM)

Nothing in it reads a config: the model family supplies ``loss_fn``, the data
source ``get_batch``, :mod:`diffusion.train.optim` the optimizer. Every value a
population of runs may vary (seed, EMA decay, loss weights in ``state.hparams``;
learning rate, β's, clipping in ``state.opt_state``) is an array in the state, so
``jax.vmap(train_step)`` trains several runs as one program.

Randomness is a pure function of (seed, step), so a resumed run needs no RNG
state and continues bit-identically.
"""

from typing import Any, Callable, Dict, Optional, Tuple

import flax
import jax
import jax.numpy as jnp
import optax

from diffusion import xla_cpu
from diffusion.train import optim

LossFn = Callable[[Any, jax.Array, jax.Array, Dict[str, jax.Array]],
                  Tuple[jax.Array, Dict[str, jax.Array]]]


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to continue: saved and restored as one pytree.

  ``hparams`` holds the step's traced hyperparameters: ``seed`` (int32),
  ``ema_decay`` and the loss weights of the model family (float32).
  ``first_nonfinite_step`` is -1 until a step produces a NaN/Inf loss, then the
  first such step; the loop checks it before logging or saving so a bad state
  is never written over a good checkpoint.
  """
  step: jax.Array                  # int32 scalar: number of updates applied
  params: Any
  ema_params: Any
  opt_state: Any
  hparams: Dict[str, jax.Array]
  first_nonfinite_step: jax.Array  # int32 scalar


def train_hparams(seed: int, ema_decay: float,
                  loss_hparams: Optional[Dict[str, float]] = None) -> Dict[str, jax.Array]:
  """``TrainState.hparams``: seed (int32), EMA decay and loss weights (float32)."""
  hparams = {"seed": jnp.asarray(seed, jnp.int32),
             "ema_decay": jnp.asarray(ema_decay, jnp.float32)}
  hparams.update({k: jnp.asarray(v, jnp.float32) for k, v in (loss_hparams or {}).items()})
  return hparams


def create_train_state(params, optimizer: optax.GradientTransformation, *, seed: int,
                       ema_decay: float, loss_hparams: Optional[Dict[str, float]] = None
                       ) -> TrainState:
  """Step-0 state; the EMA starts as a copy of the parameters."""
  hparams = train_hparams(seed, ema_decay, loss_hparams)
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params,
      ema_params=jax.tree.map(jnp.array, params),  # a distinct copy (buffers are donated)
      opt_state=optimizer.init(params), hparams=hparams,
      first_nonfinite_step=jnp.full((), -1, jnp.int32))


def step_keys(seed, step) -> Tuple[jax.Array, jax.Array]:
  """(data key, loss key) of one step: a pure function of (seed, step)."""
  key = jax.random.fold_in(jax.random.PRNGKey(seed), step)
  data_key, loss_key = jax.random.split(key)
  return data_key, loss_key


def train_step(state: TrainState, data: Any, *, loss_fn: LossFn,
               optimizer: optax.GradientTransformation,
               get_batch: Callable[[Any, jax.Array], jax.Array],
               batch_sharding: Optional[jax.sharding.Sharding] = None
               ) -> Tuple[TrainState, Dict[str, jax.Array]]:
  """One optimizer update; returns the new state and this step's scalar metrics.

  Args:
    state: the current :class:`TrainState`.
    data: what ``get_batch`` draws from (device arrays, or one host batch).
    loss_fn: ``(params, batch, key, hparams) -> (mean loss, metrics)``.
    optimizer: an optax transformation (:func:`diffusion.train.optim.make_optimizer`).
    get_batch: ``(data, key) -> batch``, pure and jittable.
    batch_sharding: optional sharding of the batch (data parallelism over a mesh).
  Returns:
    (state, metrics): metrics has the loss_fn's metrics plus loss, grad_norm and,
    for :func:`diffusion.train.optim.make_optimizer`, the step's learning rate lr.
  """
  data_key, loss_key = step_keys(state.hparams["seed"], state.step)
  batch = get_batch(data, data_key)
  if batch_sharding is not None:
    batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
  (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params, batch, loss_key, state.hparams)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  # TF DDPM's EMA copies the weights at step 0 (decay 1e-10), then averages.
  decay = jnp.where(state.step == 0, 0.0, state.hparams["ema_decay"])
  ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params, params)
  bad = (state.first_nonfinite_step < 0) & ~jnp.isfinite(loss)
  new_state = state.replace(
      step=state.step + 1, params=params, ema_params=ema, opt_state=opt_state,
      first_nonfinite_step=jnp.where(bad, state.step, state.first_nonfinite_step))
  metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))
  hyperparams = getattr(state.opt_state, "hyperparams", None)  # optax.inject_hyperparams
  if hyperparams is not None and "warmup_steps" in hyperparams:
    metrics["lr"] = optim.scheduled_learning_rate(hyperparams, state.step)
  return new_state, metrics


def scan_steps(step_fn: Callable, num_steps: int, data_per_step: bool,
               unroll: Optional[bool] = None) -> Callable:
  """``call(state, data)`` running ``num_steps`` steps in one ``lax.scan`` (score_sde's
  ``n_jitted_steps``); metrics are those of the last step.

  ``data_per_step``: ``data`` has a leading axis of ``num_steps`` (one host batch
  per step, streamed data); otherwise every step draws from the same ``data``.
  ``unroll``: the steps written out one after another instead of a loop; None (the
  default) unrolls where XLA:CPU would run the step slowly inside a loop body
  (:func:`diffusion.xla_cpu.slow_in_a_loop`: a convolutional network on the CPU, 20-50x
  slower per step rolled, BENCHMARKS.md) and ``num_steps`` is at most
  :data:`diffusion.xla_cpu.UNROLL_LIMIT` (compilation grows about K-fold unrolled; beyond
  the limit the loop stays, see :func:`diffusion.xla_cpu.steps_per_call_warning`). Memory
  is that of one step either way.
  """
  if num_steps == 1 and not data_per_step:
    return step_fn

  def call(state, data):
    first = jax.tree.map(lambda d: d[0], data) if data_per_step else data
    written_out = unroll
    if unroll is None:
      written_out = (num_steps <= xla_cpu.UNROLL_LIMIT
                     and xla_cpu.slow_in_a_loop(step_fn, state, first))
    if data_per_step:
      state, metrics = jax.lax.scan(step_fn, state, data, unroll=bool(written_out))
    else:
      state, metrics = jax.lax.scan(lambda s, _: step_fn(s, data), state, None,
                                    length=num_steps, unroll=bool(written_out))
    return state, jax.tree.map(lambda m: m[-1], metrics)

  return call

"""Train state, optimizer, EMA and the compiled training step.

One training step (design.md): key = fold_in(seed_key, step) -> batch drawn on
device -> t ~ U{0..T-1}, noise ~ N(0, I) -> x_t = q_sample(x0, t, noise) ->
eps_hat = model(x_t, t) -> loss -> grads -> optax update -> EMA -> metrics.

Randomness is a pure function of (seed, step), so a resumed run needs no RNG
state and continues bit-identically. ``steps_per_call`` steps are fused into
one compiled call with ``lax.scan`` (score_sde's ``n_jitted_steps``); memory is
that of one step, but the host sees metrics only once per call.

Data parallelism is jax.sharding (GSPMD): the state is replicated, the batch is
sharded over the mesh axis ``data``; XLA inserts the gradient all-reduce. The
same code runs on one CPU, eight devices or many hosts.
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from diffusion import losses
from diffusion.errors import check_choice
from diffusion.model_fn import make_eps_fn

DATA_AXIS = "data"


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to continue: saved and restored as one pytree.

  ``first_nonfinite_step`` is -1 until a step produces a NaN/Inf loss, then the
  first such step; the loop checks it before logging or saving so a bad state
  is never written over a good checkpoint.
  """
  step: jax.Array                  # int32 scalar: number of updates applied
  params: Any
  ema_params: Any
  opt_state: Any
  first_nonfinite_step: jax.Array  # int32 scalar


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh over all (global) devices with the batch axis ``data``."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def learning_rate_schedule(optim_cfg) -> optax.Schedule:
  """Linear warm-up to ``lr`` (DDPM code: lr * min(step / warmup, 1)), then
  constant, or exponential decay when ``decay_steps`` > 0 (DPM code)."""
  lr = optim_cfg.lr
  decay_steps = optim_cfg.get("decay_steps", 0)
  if decay_steps > 0:
    after = optax.exponential_decay(lr, decay_steps, optim_cfg.get("decay_rate", 1.0),
                                    end_value=optim_cfg.get("min_lr", 0.0) or None)
  else:
    after = optax.constant_schedule(lr)
  if optim_cfg.warmup_steps > 0:
    warm = optax.linear_schedule(0.0, lr, optim_cfg.warmup_steps)
    return optax.join_schedules([warm, after], [optim_cfg.warmup_steps])
  return after


def make_optimizer(optim_cfg) -> optax.GradientTransformation:
  """Global-norm clipping (if ``grad_clip`` > 0) followed by the optimizer."""
  check_choice("optim.optimizer", optim_cfg.optimizer, ("adam", "adamw", "rmsprop"))
  lr = learning_rate_schedule(optim_cfg)
  if optim_cfg.optimizer == "adam":
    opt = optax.adam(lr, b1=optim_cfg.beta1, b2=optim_cfg.beta2, eps=optim_cfg.eps)
  elif optim_cfg.optimizer == "adamw":
    opt = optax.adamw(lr, b1=optim_cfg.beta1, b2=optim_cfg.beta2, eps=optim_cfg.eps,
                      weight_decay=optim_cfg.weight_decay)
  else:
    opt = optax.rmsprop(lr, decay=optim_cfg.beta2, eps=optim_cfg.eps)
  if optim_cfg.grad_clip > 0:
    return optax.chain(optax.clip_by_global_norm(optim_cfg.grad_clip), opt)
  return opt


def init_params(module, key: jax.Array, example_shape) -> Any:
  """Initial parameters of ``module`` for inputs of shape [1, *example_shape]."""
  x = jnp.zeros((1, *example_shape), jnp.float32)
  variables = module.init({"params": key, "dropout": key}, x, jnp.zeros((1,)), train=False)
  return variables.get("params", {})


def abstract_train_state(module, optimizer, example_shape) -> TrainState:
  """Shapes and dtypes of the step-0 state (no allocation): a restore target."""
  return jax.eval_shape(
      lambda: create_train_state(init_params(module, jax.random.PRNGKey(0), example_shape),
                                 optimizer))


def create_train_state(params, optimizer) -> TrainState:
  """Step 0 state; the EMA starts as a copy of the parameters."""
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params,
      ema_params=jax.tree.map(jnp.array, params),  # a distinct copy (buffers are donated)
      opt_state=optimizer.init(params),
      first_nonfinite_step=jnp.full((), -1, jnp.int32))


def count_params(params) -> int:
  return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))


def step_keys(seed: int, step: jax.Array):
  """(data, t, noise, dropout) keys of one step, a pure function of (seed, step)."""
  key = jax.random.fold_in(jax.random.PRNGKey(seed), step)
  return jax.random.split(key, 4)


def make_train_step(module, process, optimizer, config, source, mesh: Mesh):
  """Builds ``train_call(state, data) -> (state, metrics)``, jitted, state donated.

  Args:
    source: the data source (diffusion.data). Device-resident: ``data`` is its
      ``arrays`` dict, already on device; batches are drawn inside the call.
      Streaming: ``data`` is a uint8 batch stacked as [steps_per_call, B, ...].
    mesh: batch is sharded over ``mesh``'s ``data`` axis, state replicated.

  Returns metrics of the last step of the call: loss, mse (and vb), grad_norm, lr.
  """
  tcfg, dcfg = config.training, config.diffusion
  batch_size, seed = tcfg.batch_size, tcfg.seed
  ema_decay = float(tcfg.ema_decay)
  lr_fn = learning_rate_schedule(config.optim)
  batch_sharding = NamedSharding(mesh, P(DATA_AXIS))
  num_timesteps = process.num_timesteps

  def one_step(state: TrainState, batch_or_arrays):
    k_data, k_t, k_noise, k_drop = step_keys(seed, state.step)
    if source.device_resident:
      x0 = source.get_batch(batch_or_arrays, k_data, batch_size)
    else:
      x0 = source.preprocess(batch_or_arrays, k_data)
    x0 = jax.lax.with_sharding_constraint(x0, batch_sharding)
    t = jax.random.randint(k_t, (x0.shape[0],), 0, num_timesteps, dtype=jnp.int32)
    noise = jax.random.normal(k_noise, x0.shape, jnp.float32)

    def loss_fn(params):
      eps_fn = make_eps_fn(module, params, process, config.model, train=True,
                           dropout_rng=k_drop)
      terms = losses.training_losses(process, eps_fn, x0, t, noise, dcfg)
      return jnp.mean(terms["loss"]), terms

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # TF-DDPM's EMA copies the weights at step 0, then averages (gotcha 9).
    decay = jnp.where(state.step == 0, 0.0, ema_decay)
    ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params, params)
    bad = (state.first_nonfinite_step < 0) & ~jnp.isfinite(loss)
    new_state = TrainState(
        step=state.step + 1, params=params, ema_params=ema, opt_state=opt_state,
        first_nonfinite_step=jnp.where(bad, state.step, state.first_nonfinite_step))
    metrics = {k: jnp.mean(v) for k, v in terms.items()}
    metrics.update(loss=loss, grad_norm=optax.global_norm(grads), lr=lr_fn(state.step))
    return new_state, metrics

  steps = tcfg.steps_per_call

  def train_call(state, data):
    if steps == 1:
      return one_step(state, data if source.device_resident else data[0])
    if source.device_resident:
      state, metrics = jax.lax.scan(lambda s, _: one_step(s, data), state, None, length=steps)
    else:
      state, metrics = jax.lax.scan(one_step, state, data)
    return state, jax.tree.map(lambda m: m[-1], metrics)

  return jax.jit(train_call, donate_argnums=(0,))


def replicate(tree, mesh: Mesh):
  """Places every leaf of ``tree`` fully replicated on ``mesh``."""
  return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_batch(batch: np.ndarray, mesh: Mesh, axis: int = 0) -> jax.Array:
  """Places a host batch on ``mesh``, split along ``axis`` over the data axis.

  In a multi-host run each process passes its own slice of the global batch.
  """
  spec = [None] * batch.ndim
  spec[axis] = DATA_AXIS
  sharding = NamedSharding(mesh, P(*spec))
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  global_shape = list(batch.shape)
  global_shape[axis] *= jax.process_count()
  return jax.make_array_from_process_local_data(sharding, batch, tuple(global_shape))

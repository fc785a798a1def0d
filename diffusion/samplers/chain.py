"""The one compiled chain every plan-based sampler runs: ``lax.scan(step, x_T, rows)``.

A sampler is two parts, in the manner of EDM's ``generate.py``:

1. a **plan** (:class:`Plan`), computed once on the host in float64 numpy from the
   process: one row of coefficients per step of the chain (the model's level t,
   the x̂₀ and posterior-mean coefficients, the noise scale, ...), stored as
   float32, plus the sampler's ``step`` and optional ``finish`` functions;
2. a short **step** ``step(eps_fn, plan, x0_range, x, row, z) -> x`` that turns x
   into the next x using one row (``z`` is this step's N(0, I) draw).

:func:`run_plan` jits the chain in one place. It knows no sampler by name: the
plan carries its own step, so a new sampler is a new module that builds plans.

Passing ``jax.tree_util.Partial(apply_fn, params)`` as eps_fn makes the
parameters arguments of the compiled chain (instead of constants baked into it),
so repeated calls with new parameters reuse one compilation.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from diffusion.errors import ConfigError

Array = jax.Array


@flax.struct.dataclass
class Plan:
  """A sampler's chain: ``rows`` (dict of [N] tables, one row per step) and how to step.

  ``rows`` are scanned in order (row 0 is the first step, from x_T). ``process`` is
  the (possibly respaced) process, used for the prior draw and by ``finish``.
  ``step(eps_fn, plan, x0_range, x, row, z) -> x`` applies one row;
  ``finish(eps_fn, plan, x) -> x`` (optional) runs once after the last row.
  ``settings`` is the typed ``config.sampling`` (read by attribute).
  """
  rows: Dict[str, Array]
  process: Any
  settings: Any = flax.struct.field(pytree_node=False)
  step: Callable = flax.struct.field(pytree_node=False)
  finish: Optional[Callable] = flax.struct.field(pytree_node=False, default=None)

  @property
  def num_steps(self) -> int:
    return int(next(iter(self.rows.values())).shape[0])


def f32(a) -> Array:
  """A float64 host table as a float32 device array (plans are computed in float64)."""
  return jnp.asarray(np.asarray(a, np.float64), jnp.float32)


def levels(row, x: Array) -> Array:
  """The row's model level as int32 [B] for a batch x."""
  return jnp.full((x.shape[0],), row["model_t"], jnp.int32)


# ---------------------------------------------------------------------------
# eps_fn as (static, dynamic) parts, so parameters are arguments of the program
# ---------------------------------------------------------------------------


class _EpsSpec:
  """Static part of eps_fn (tree structure + non-array leaves), hashable for jit."""

  def __init__(self, treedef, is_array: Tuple[bool, ...], static_leaves: Tuple[Any, ...]):
    self.treedef, self.is_array, self.static_leaves = treedef, is_array, static_leaves
    try:
      self._key = (treedef, is_array, static_leaves)
      self._hash = hash(self._key)
    except TypeError:  # unhashable leaves: fall back to identity (no cache hits)
      self._key, self._hash = None, id(self)

  def __hash__(self):
    return self._hash

  def __eq__(self, other):
    if self._key is None or not isinstance(other, _EpsSpec) or other._key is None:
      return self is other
    return self._key == other._key

  def rebuild(self, dynamic_leaves):
    dyn, stat = iter(dynamic_leaves), iter(self.static_leaves)
    leaves = [next(dyn) if a else next(stat) for a in self.is_array]
    return jax.tree_util.tree_unflatten(self.treedef, leaves)


def split_fn(fn) -> Tuple[_EpsSpec, list]:
  """A function pytree (e.g. ``jax.tree_util.Partial``) as (hashable spec, array leaves)."""
  leaves, treedef = jax.tree_util.tree_flatten(fn)
  is_array = tuple(isinstance(l, (jax.Array, np.ndarray)) for l in leaves)
  dynamic = [l for l, a in zip(leaves, is_array) if a]
  static = tuple(l for l, a in zip(leaves, is_array) if not a)
  return _EpsSpec(treedef, is_array, static), dynamic


# ---------------------------------------------------------------------------
# The one compiled chain
# ---------------------------------------------------------------------------


def _initial_state(plan: Plan, key, shape, init):
  if init is not None:
    return init.astype(jnp.float32)
  if plan.settings.init == "uniform":
    return jax.random.uniform(key, shape, jnp.float32)
  return plan.process.prior_sample(key, shape).astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("spec", "shape", "x0_range", "trajectory_every"))
def _run_chain(dynamic, plan: Plan, key, init, *, spec, shape, x0_range, trajectory_every):
  eps_fn = spec.rebuild(dynamic)
  init_key, loop_key = jax.random.split(key)
  x = _initial_state(plan, init_key, shape, init)
  step = functools.partial(plan.step, eps_fn, plan, x0_range)
  n = plan.num_steps
  index = jnp.arange(n, dtype=jnp.int32)

  def body(x, i_row):
    i, row = i_row
    z = jax.random.normal(jax.random.fold_in(loop_key, i), x.shape, x.dtype)
    return step(x, row, z), None

  def run(x, start, stop):
    part = jax.tree.map(lambda a: a[start:stop], (index, plan.rows))
    return jax.lax.scan(body, x, part)[0]

  traj = None
  if trajectory_every > 0:
    k, chunks = trajectory_every, n // trajectory_every
    blocks = jax.tree.map(lambda a: a[:chunks * k].reshape((chunks, k) + a.shape[1:]),
                          (index, plan.rows))
    x_init = x
    x, states = jax.lax.scan(lambda x, block: (jax.lax.scan(body, x, block)[0],) * 2, x,
                             blocks)
    traj = jnp.concatenate([x_init[None], states], axis=0)
    x = run(x, chunks * k, n)
  else:
    x = run(x, 0, n)

  if plan.finish is not None:
    x = plan.finish(eps_fn, plan, x)
  return x, traj


def run_plan(plan: Plan, eps_fn: Callable, shape: Sequence[int], key: Array,
             init: Optional[Array] = None,
             x0_range: Optional[Tuple[float, float]] = (-1.0, 1.0), trajectory_every: int = 0):
  """Runs a plan from x_T (drawn from ``key`` or given as ``init``).

  Args:
    plan: from a sampler's ``make_plan(process, settings)``.
    eps_fn: (x_t [B, ...] float32, t int32 [B]) -> ε̂, or (ε̂, v).
    shape: [B, ...] of the samples; key: PRNG key (x_T and every step's noise).
    init: optional x_T of ``shape`` (replaces the draw from ``settings.init``).
    x0_range: (lo, hi) used to clip x̂₀ when ``settings.clip_x0``; None never clips.
    trajectory_every: k > 0 also returns the state every k steps,
      trajectory[m] = state after m·k steps, m = 0..N//k (0 = x_T).
  Returns:
    samples [shape] float32, or (samples, trajectory [N//k + 1, *shape]).
  """
  shape = tuple(int(s) for s in shape)
  if init is not None:
    init = jnp.asarray(init, jnp.float32)
    if tuple(init.shape) != shape:
      raise ValueError(f"init has shape {tuple(init.shape)}, expected {shape}.")
  if isinstance(trajectory_every, bool) or not isinstance(trajectory_every, int) or \
      trajectory_every < 0:
    raise ConfigError(f"trajectory_every={trajectory_every!r} is not valid; it must be an "
                      "integer >= 0.")
  spec, dynamic = split_fn(eps_fn)
  x_range = None if x0_range is None else (float(x0_range[0]), float(x0_range[1]))
  x, traj = _run_chain(dynamic, plan, key, init, spec=spec, shape=shape, x0_range=x_range,
                       trajectory_every=trajectory_every)
  return (x, traj) if trajectory_every > 0 else x

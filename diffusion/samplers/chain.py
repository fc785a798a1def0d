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
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from flax.core import FrozenDict

from diffusion.errors import ConfigError
from diffusion.options import NONNEGATIVE, Option, declare

Array = jax.Array

# ---------------------------------------------------------------------------
# Options that several samplers read, declared once here so their declarations agree
# (each sampler's signature gives the default; the config checks they are equal)
# ---------------------------------------------------------------------------

NUM_STEPS = Option("steps of the chain (0 = the sampler's own: every level; heun 18, "
                   "dpm_solver 20, ipndm / unipc / deis 10); fewer than T respace the "
                   "chain", rule=NONNEGATIVE)
CLIP_X0 = Option("clip x0_hat (the denoiser's output D) to the data range inside each step")
SIGMA_POLICIES = ("round", "interpolate")
SIGMA_POLICY = Option("a step between the network's levels: round (to the nearest level, "
                      "EDM's round_sigma) or interpolate (a fractional level, log sigma "
                      "linear between levels; docs/samplers.md)", choices=SIGMA_POLICIES)
DENOISE = Option("a final denoising step to x0_hat from the last level (NCSNv2; score_sde's "
                 "noise_removal, DPM-Solver's denoise_to_zero; +1 NFE)")
INITS = ("prior", "uniform")


@flax.struct.dataclass
class Plan:
  """A sampler's chain: ``rows`` (dict of [N] tables, one row per step) and how to step.

  ``rows`` are scanned in order (row 0 is the first step, from x_T). ``process`` is
  the (possibly respaced) process, used for the prior draw and by ``finish``.
  ``step(eps_fn, plan, x0_range, x, row, z) -> x`` applies one row;
  ``finish(eps_fn, plan, x) -> x`` (optional) runs once after the last row.
  ``options`` are the sampler's options that ``step`` and ``finish`` read (e.g. DDIM's
  ``eta``, ``clip_x0``), a hashable mapping: equal plans share one compiled chain.
  ``memory(x_T) -> m`` (optional, a multistep sampler's): the memory of earlier
  predictions it starts with (e.g. zeros); the chain's state is then the pair (x, m),
  which ``step`` takes and returns, while trajectories and ``finish`` see x.
  """
  rows: Dict[str, Array]
  process: Any
  step: Callable = flax.struct.field(pytree_node=False)
  finish: Optional[Callable] = flax.struct.field(pytree_node=False, default=None)
  options: FrozenDict = flax.struct.field(pytree_node=False, default=FrozenDict())
  memory: Optional[Callable] = flax.struct.field(pytree_node=False, default=None)

  def begin(self, x: Array):
    """The chain's state at x_T: x, or (x, memory(x)) for a multistep sampler."""
    return x if self.memory is None else (x, self.memory(x))

  def samples(self, state) -> Array:
    """x of a chain state (see :meth:`begin`)."""
    return state if self.memory is None else state[0]

  @property
  def num_steps(self) -> int:
    return int(next(iter(self.rows.values())).shape[0])


def f32(a) -> Array:
  """A float64 host table as a float32 device array (plans are computed in float64)."""
  return jnp.asarray(np.asarray(a, np.float64), jnp.float32)


def levels(row, x: Array) -> Array:
  """The row's model level for a batch x: int32 [B], or float32 [B] when the row holds a
  fractional level (``sigma_policy='interpolate'``)."""
  t = row["model_t"]
  dtype = jnp.float32 if jnp.issubdtype(t.dtype, jnp.floating) else jnp.int32
  return jnp.full((x.shape[0],), t, dtype)


def level_rows(levels_: np.ndarray) -> Array:
  """A plan's column of model levels: int32 for integer levels, float32 for fractional
  ones (a float64 table of ``sigma_policy='interpolate'``)."""
  levels_ = np.asarray(levels_)
  if np.issubdtype(levels_.dtype, np.integer):
    return jnp.asarray(levels_.astype(np.int32))
  return f32(levels_)


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


def _initial_state(plan: Plan, key, shape, x_T, init: str):
  if x_T is not None:
    return x_T.astype(jnp.float32)
  if init == "uniform":
    return jax.random.uniform(key, shape, jnp.float32)
  return plan.process.prior_sample(key, shape).astype(jnp.float32)


def _start(plan: Plan, key, x_T, shape, init: str):
  """(x_T, the key of every step's noise): both chains below begin the same way."""
  init_key, loop_key = jax.random.split(key)
  return _initial_state(plan, init_key, shape, x_T, init), loop_key


def _scan_steps(eps_fn, plan: Plan, x0_range, loop_key, x, index, rows):
  """The chain state ``x`` (see :meth:`Plan.begin`) after the steps ``index`` (int32 [n],
  their global numbers) with their ``rows``."""
  step = functools.partial(plan.step, eps_fn, plan, x0_range)

  def body(state, i_row):
    i, row = i_row
    x = plan.samples(state)
    z = jax.random.normal(jax.random.fold_in(loop_key, i), x.shape, x.dtype)
    return step(state, row, z), None

  return jax.lax.scan(body, x, (index, rows))[0]


@functools.partial(jax.jit, static_argnames=("spec", "shape", "x0_range", "trajectory_every",
                                             "init"))
def _run_chain(dynamic, plan: Plan, key, x_T, *, spec, shape, x0_range, trajectory_every, init):
  eps_fn = spec.rebuild(dynamic)
  x, loop_key = _start(plan, key, x_T, shape, init)
  scan = functools.partial(_scan_steps, eps_fn, plan, x0_range, loop_key)
  n = plan.num_steps
  index = jnp.arange(n, dtype=jnp.int32)

  def run(state, start, stop):
    return scan(state, *jax.tree.map(lambda a: a[start:stop], (index, plan.rows)))

  traj = None
  state = plan.begin(x)
  if trajectory_every > 0:
    k, chunks = trajectory_every, n // trajectory_every

    def block_step(state, block):
      state = scan(state, *block)
      return state, plan.samples(state)

    blocks = jax.tree.map(lambda a: a[:chunks * k].reshape((chunks, k) + a.shape[1:]),
                          (index, plan.rows))
    state, states = jax.lax.scan(block_step, state, blocks)
    traj = jnp.concatenate([x[None], states], axis=0)
    state = run(state, chunks * k, n)
  else:
    state = run(state, 0, n)

  x = plan.samples(state)
  if plan.finish is not None:
    x = plan.finish(eps_fn, plan, x)
  return x, traj


# ---------------------------------------------------------------------------
# The same chain in segments, for a progress report between them
# ---------------------------------------------------------------------------

PROGRESS_PARTS = 20   # a report about every 5% of the chain


def segments(n: int, parts: int = PROGRESS_PARTS) -> List[Tuple[int, int]]:
  """[start, stop) pieces of a chain of ``n`` steps, about ``parts`` of them.

  The pieces have one length when a count within [2/3, 3/2] of ``parts`` divides ``n``
  (one compiled segment program), else one length and a shorter last piece (two).
  """
  if n <= parts:
    return [(i, i + 1) for i in range(n)]
  counts = [c for c in range(parts * 2 // 3, parts * 3 // 2 + 1) if n % c == 0]
  count = min(counts, key=lambda c: abs(c - parts)) if counts else parts
  length = -(-n // count)
  return [(start, min(start + length, n)) for start in range(0, n, length)]


_jit_start = jax.jit(_start, static_argnames=("shape", "init"))


@functools.partial(jax.jit, static_argnames=("spec", "x0_range", "length"))
def _run_segment(dynamic, plan: Plan, loop_key, x, start, *, spec, x0_range, length):
  """Steps start .. start + length − 1 (``start`` is traced: one program per length)."""
  index = start + jnp.arange(length, dtype=jnp.int32)
  rows = jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, length), plan.rows)
  return _scan_steps(spec.rebuild(dynamic), plan, x0_range, loop_key, x, index, rows)


@functools.partial(jax.jit, static_argnames=("spec",))
def _run_finish(dynamic, plan: Plan, x, *, spec):
  return plan.finish(spec.rebuild(dynamic), plan, x)


def _run_in_segments(dynamic, plan: Plan, key, x_T, on_progress, *, spec, shape, x0_range,
                     init):
  """:func:`_run_chain` without a trajectory, as a few compiled calls: after each,
  ``on_progress(steps done, steps in all)``. The programs hold no host callback, so the
  persistent compilation cache keeps them, and each report counts finished steps."""
  x, loop_key = _jit_start(plan, key, x_T, shape=shape, init=init)
  state = plan.begin(x)
  n = plan.num_steps
  for start, stop in segments(n):
    state = _run_segment(dynamic, plan, loop_key, state, start, spec=spec, x0_range=x0_range,
                         length=stop - start)
    jax.block_until_ready(state)
    on_progress(stop, n)
  x = plan.samples(state)
  if plan.finish is not None:
    x = _run_finish(dynamic, plan, x, spec=spec)
  return x


def run_plan(plan: Plan, eps_fn: Callable, shape: Sequence[int], key: Array,
             x_T: Optional[Array] = None,
             x0_range: Optional[Tuple[float, float]] = (-1.0, 1.0), trajectory_every: int = 0,
             on_progress: Optional[Callable[[int, int], None]] = None, *,
             init: str = "prior"):
  """Runs a plan from x_T (drawn from ``key`` as ``init`` says, or given as ``x_T``).

  Args:
    plan: from a sampler's ``make_plan(process, **options)``.
    eps_fn: (x_t [B, ...] float32, t int32 [B]) -> ε̂, or (ε̂, v).
    shape: [B, ...] of the samples; key: PRNG key (x_T and every step's noise).
    x_T: optional start of ``shape`` (replaces the draw).
    x0_range: (lo, hi) used to clip x̂₀ when the sampler clips; None never clips.
    trajectory_every: k > 0 also returns the state every k steps,
      trajectory[m] = state after m·k steps, m = 0..N//k (0 = x_T).
    on_progress: optional ``(steps done, N)`` callback, called about every 5% of the
      chain (:func:`segments`), each time those steps have finished on the device. The
      chain then runs as a few compiled calls instead of one; the samples are the same.
      Not inside ``jax.jit`` (the reports would come while tracing).
    init: how x_T is drawn when not given: ``prior`` (the process's N(0, I) or
      N(0, σ_max² I)) or ``uniform`` U[0, 1] (NCSN).
  Returns:
    samples [shape] float32, or (samples, trajectory [N//k + 1, *shape]).
  """
  shape = tuple(int(s) for s in shape)
  if x_T is not None:
    x_T = jnp.asarray(x_T, jnp.float32)
    if tuple(x_T.shape) != shape:
      raise ValueError(f"x_T has shape {tuple(x_T.shape)}, expected {shape}.")
  if isinstance(trajectory_every, bool) or not isinstance(trajectory_every, int) or \
      trajectory_every < 0:
    raise ConfigError(f"trajectory_every={trajectory_every!r} is not valid; it must be an "
                      "integer >= 0.")
  spec, dynamic = split_fn(eps_fn)
  x_range = None if x0_range is None else (float(x0_range[0]), float(x0_range[1]))
  if on_progress is not None:
    if trajectory_every:
      raise ValueError("run_plan: on_progress reports a chain without a trajectory; give "
                       "trajectory_every=0.")
    return _run_in_segments(dynamic, plan, key, x_T, on_progress, spec=spec, shape=shape,
                            x0_range=x_range, init=init)
  x, traj = _run_chain(dynamic, plan, key, x_T, spec=spec, shape=shape, x0_range=x_range,
                       trajectory_every=trajectory_every, init=init)
  return (x, traj) if trajectory_every > 0 else x


# What every plan-based sampler reads besides its own options: how x_T is drawn.
OPTIONS = declare(run_plan, init=Option(
    "x_T: prior (N(0, I) or N(0, sigma_max^2 I)) or uniform U[0, 1]", choices=INITS))

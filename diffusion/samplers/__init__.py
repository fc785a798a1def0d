"""Samplers: DDPM ancestral, DDIM and annealed Langevin, as coefficient tables plus a step.

Each method is two parts, in the manner of EDM's ``generate.py``:

1. a **plan**, computed once on the host in float64 numpy from the process: one
   row of coefficients per step of the chain (the model's level t, the x̂₀ and
   posterior-mean coefficients, the noise scale, ...), stored as float32;
2. a short **step** function that turns x into the next x using one row; the
   chain is ``lax.scan(step, x_T, rows)``, jitted in one place (``_run_chain``).

All samplers meet the model only through ``eps_fn(x_t, t)``:
  x_t: [B, ...] float32, t: int32 [B] (0 = least noise) -> ε̂ with x_t's shape,
  or (ε̂, v) for learned-variance models (read by ``model_fn.as_prediction``).
Any function works: a trained network, an analytic mixture ε, an external model.

Methods (``config.sampling.method``):
  ancestral: x_{t−1} = μ_θ(x_t, t) + 𝟙[t>0]·exp(½ log Σ)·z (DDPM Alg. 2), with
    x̂₀ = x_t/√ᾱ_t − √(1/ᾱ_t − 1)·ε̂ optionally clipped to x0_range; Σ fixedlarge
    (β_t) or fixedsmall (β̃_t), or learned_range when eps_fn returns (ε̂, v).
    With 0 < num_steps < T the chain runs on ``space_timesteps(T, str(num_steps))``
    with respaced β_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}} (Improved DDPM, ``process.respace``);
    the model still sees the original t = τ_i.
  ddim: x_s = a_s x̂₀ + c₂·ε̂ + c₁ z with c₁ = η·(posterior std of x_s | x_t, x₀),
    c₂ = √(n_s² − c₁²), a = signal scale, n = noise std, s the previous element
    of τ (the data at the end: a = 1, n = 0); ermongroup/ddim's
    ``generalized_steps`` for VP. When x̂₀ is clipped, ε̂ is re-derived from the
    clipped x̂₀ (Improved DDPM's ``ddim_sample``).
  annealed_langevin: for levels i = L−1..0 (largest σ first), n_steps_each steps
    x ← x + α s + √(2α) z ('code', NCSN/NCSNv2 code) or x + α/2 s + √α z
    ('paper', NCSN Alg. 1), α = ε·σ_i²/σ_min², s = eps_to_score(ε̂); optional
    final denoising x ← x + σ_min² s(x, σ_min) (NCSNv2).

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

from diffusion.config import SamplingConfig
from diffusion.errors import ConfigError
from diffusion.core.model_fn import as_prediction

Array = jax.Array


# ---------------------------------------------------------------------------
# Step selection
# ---------------------------------------------------------------------------


def ddim_timesteps(num_timesteps: int, num_steps: int, skip_type: str = "uniform") -> np.ndarray:
  """DDIM sub-sequence τ (ascending int64), as ermongroup/ddim's ``sample_image``.

  uniform: range(0, T, T // S) (S=50, T=1000: 0, 20, ..., 980);
  quad: int(linspace(0, √(0.8 T), S)²) (ends at 0.8 T; may repeat early values,
  as in the reference code). num_steps = 0 means every step.
  """
  T, S = int(num_timesteps), int(num_steps) or int(num_timesteps)
  if not 1 <= S <= T:
    raise ConfigError(f"sampling.num_steps={num_steps!r} is not valid for ddim; "
                      f"it must be in 1..{T} (diffusion.num_timesteps), or 0 for all.")
  if skip_type == "uniform":
    return np.arange(0, T, T // S, dtype=np.int64)
  seq = np.linspace(0.0, np.sqrt(T * 0.8), S) ** 2
  return np.array([int(s) for s in seq], dtype=np.int64)


def space_timesteps(num_timesteps: int, section_counts) -> np.ndarray:
  """Kept steps for respaced sampling, exactly Improved DDPM's ``space_timesteps``.

  Args:
    num_timesteps: T of the original process.
    section_counts: "K" / [K1, K2, ...]: split 0..T−1 into equal sections and
      take K_i evenly strided steps from section i, both ends included; or
      "ddimK": range(0, T, stride) with exactly K elements.
  Returns:
    sorted unique int64 array of kept steps.

  The position inside a section is accumulated as improved-diffusion's respace.py
  does (``cur_idx += frac_stride``, then Python's round-half-to-even), so ties
  break the same way for every count (e.g. 21 steps of T = 1000 keep 499, where
  rounding 10 · 49.95 directly would keep 500).
  """
  T = int(num_timesteps)
  if isinstance(section_counts, str):
    if section_counts.startswith("ddim"):
      want = int(section_counts[4:])
      for stride in range(1, T):
        if len(range(0, T, stride)) == want:
          return np.arange(0, T, stride, dtype=np.int64)
      raise ConfigError(f"cannot take exactly {want} strided steps from T={T}.")
    section_counts = [int(c) for c in section_counts.split(",")]
  counts = list(section_counts)
  base, extra = divmod(T, len(counts))
  steps, start = [], 0
  for i, count in enumerate(counts):
    size = base + (1 if i < extra else 0)
    if size < count:
      raise ConfigError(f"cannot take {count} steps from a section of {size} steps (T={T}).")
    stride = 1.0 if count <= 1 else (size - 1) / (count - 1)
    position = 0.0
    for _ in range(count):
      steps.append(start + round(position))
      position += stride
    start += size
  return np.array(sorted(set(steps)), dtype=np.int64)


def check_num_steps(settings: SamplingConfig, num_timesteps: int) -> None:
  """sampling.num_steps against T for the chosen method (ConfigError naming the field)."""
  s, T = settings, int(num_timesteps)
  if s.method == "annealed_langevin" and s.num_steps not in (0, T):
    raise ConfigError(f"sampling.num_steps={s.num_steps} is not valid for annealed_langevin, "
                      "which visits every level; set it to 0.")
  if s.num_steps > T:
    raise ConfigError(f"sampling.num_steps={s.num_steps} is not valid for {s.method}; it "
                      f"must be <= diffusion.num_timesteps={T} (0 = every level).")


# ---------------------------------------------------------------------------
# Plans: per-step coefficient tables, computed once in float64
# ---------------------------------------------------------------------------


@flax.struct.dataclass
class Plan:
  """A sampler's chain: ``rows`` (dict of [N] tables, one row per step) and its method.

  ``rows`` are scanned in order (row 0 is the first step, from x_T). ``process`` is
  the (possibly respaced) process, used for the prior draw and the final denoise.
  """
  rows: Dict[str, Array]
  process: Any
  settings: SamplingConfig = flax.struct.field(pytree_node=False)

  @property
  def num_steps(self) -> int:
    return int(next(iter(self.rows.values())).shape[0])


def _f32(a) -> Array:
  return jnp.asarray(np.asarray(a, np.float64), jnp.float32)


def ancestral_plan(process, settings: SamplingConfig) -> Plan:
  """DDPM ancestral rows, last level first: model t, x̂₀ coefficients, posterior mean
  coefficients, log-variances (fixed, and the learned_range end points), noise mask."""
  T = process.num_timesteps
  model_t = np.arange(T)
  if settings.num_steps not in (0, T):
    model_t = space_timesteps(T, str(settings.num_steps))
    process = process.respace(model_t)
  scale, std = process.host_marginal()
  # learned_range takes its variance from the model; the fixed column is then unused.
  fixed_type = "fixedlarge" if settings.var_type == "learned_range" else settings.var_type
  fixed = process.p_log_variance(jnp.arange(process.num_timesteps), fixed_type)
  order = np.arange(process.num_timesteps)[::-1]
  rows = dict(
      model_t=model_t[order].astype(np.int32),
      recip_scale=1.0 / scale[order],                   # x̂₀ = x/√ᾱ − √(1/ᾱ − 1)·ε̂
      eps_to_x0=(std / scale)[order],
      coef_x0=np.asarray(process.posterior_mean_coef1, np.float64)[order],
      coef_xt=np.asarray(process.posterior_mean_coef2, np.float64)[order],
      log_var=np.asarray(fixed, np.float64)[order],
      min_log_var=np.asarray(process.posterior_log_variance_clipped, np.float64)[order],
      max_log_var=np.asarray(process.step_log_variance, np.float64)[order],
      noise=(order > 0).astype(np.float64))              # no noise on the last step
  return Plan({k: (jnp.asarray(v) if v.dtype == np.int32 else _f32(v))
               for k, v in rows.items()}, process, settings)


def ddim_coefficients(process, timesteps: Sequence[int], eta: float) -> Dict[str, np.ndarray]:
  """Per-step DDIM coefficients along τ (ascending), for the step τ_j -> τ_{j−1}.

  Computed in float64 from the process's schedule. Returns a dict of float64 [S]
  arrays (index j = the step leaving τ_j):
    a_t, n_t: signal scale and noise std at τ_j;
    a_s, n_s: the same at τ_{j−1} (a = 1, n = 0 before τ_0);
    c1: noise std η·√(n_s² (n_t² − (a_t/a_s)² n_s²)/n_t²) — for VP and
      consecutive steps with η = 1 this is √β̃_t;
    c2: √(n_s² − c1²), the weight on ε̂.
  """
  scale, std = process.host_marginal()
  tau = np.asarray(timesteps, np.int64)
  a_t, n_t = scale[tau], std[tau]
  a_s = np.append(1.0, a_t[:-1])
  n_s = np.append(0.0, n_t[:-1])
  r = a_t / a_s
  post_var = n_s ** 2 * np.maximum(n_t ** 2 - r ** 2 * n_s ** 2, 0.0) / n_t ** 2
  c1 = float(eta) * np.sqrt(post_var)
  c2 = np.sqrt(np.maximum(n_s ** 2 - c1 ** 2, 0.0))
  return dict(a_t=a_t, n_t=n_t, a_s=a_s, n_s=n_s, c1=c1, c2=c2)


def ddim_plan(process, settings: SamplingConfig) -> Plan:
  """DDIM rows along τ, last element first."""
  tau = ddim_timesteps(process.num_timesteps, settings.num_steps, settings.skip_type)
  coefs = ddim_coefficients(process, tau, settings.eta)
  order = np.arange(len(tau))[::-1]
  rows = {k: _f32(v[order]) for k, v in coefs.items()}
  rows["model_t"] = jnp.asarray(tau[order].astype(np.int32))
  return Plan(rows, process, settings)


def langevin_plan(process, settings: SamplingConfig) -> Plan:
  """Annealed-Langevin rows: n_steps_each rows per level, largest σ first, each with
  its step α_i = ε (σ_i/σ_min)² (NCSN Alg. 1; NCSN/NCSNv2 code)."""
  _, std = process.host_marginal()
  levels = np.repeat(np.arange(process.num_timesteps)[::-1], settings.n_steps_each)
  alpha = settings.step_size * (std / std[0]) ** 2
  return Plan(dict(model_t=jnp.asarray(levels.astype(np.int32)), alpha=_f32(alpha[levels])),
              process, settings)


PLANS: Dict[str, Callable[[Any, SamplingConfig], Plan]] = {
    "ancestral": ancestral_plan, "ddim": ddim_plan, "annealed_langevin": langevin_plan,
}


def make_plan(process, sampling_cfg=None) -> Plan:
  """The chain that ``config.sampling`` describes on ``process`` (host work, done once)."""
  settings = SamplingConfig.parse(sampling_cfg)
  check_num_steps(settings, process.num_timesteps)
  return PLANS[settings.method](process, settings)


# ---------------------------------------------------------------------------
# Steps: one row of a plan applied to x
# ---------------------------------------------------------------------------


def _langevin_update(x: Array, score: Array, alpha, z: Array, form: str) -> Array:
  """One Langevin step: 'code' x + α s + √(2α) z; 'paper' x + α/2 s + √α z."""
  if form == "code":
    return x + alpha * score + jnp.sqrt(2.0 * alpha) * z
  return x + 0.5 * alpha * score + jnp.sqrt(alpha) * z


def _ancestral_step(eps_fn, plan: Plan, x0_range, x, row, z):
  s = plan.settings
  t = jnp.full((x.shape[0],), row["model_t"], jnp.int32)
  eps, v = as_prediction(eps_fn(x, t), s.var_type, "sampling.var_type")
  x0 = row["recip_scale"] * x - row["eps_to_x0"] * eps            # DDPM eq. 15 for x̂₀
  if s.clip_x0 and x0_range is not None:
    x0 = jnp.clip(x0, x0_range[0], x0_range[1])
  mean = row["coef_x0"] * x0 + row["coef_xt"] * x                  # posterior mean (eq. 7)
  log_var = row["log_var"]
  if v is not None:                                                # Improved DDPM eq. 15
    frac = (v + 1.0) / 2.0
    log_var = frac * row["max_log_var"] + (1.0 - frac) * row["min_log_var"]
  return mean + row["noise"] * jnp.exp(0.5 * log_var) * z          # DDPM Alg. 2, line 4


def _ddim_step(eps_fn, plan: Plan, x0_range, x, row, z):
  s = plan.settings
  t = jnp.full((x.shape[0],), row["model_t"], jnp.int32)
  eps = as_prediction(eps_fn(x, t)).eps
  x0 = (x - row["n_t"] * eps) / row["a_t"]                          # DDIM eq. 12, "predicted x0"
  if s.clip_x0 and x0_range is not None:
    x0 = jnp.clip(x0, x0_range[0], x0_range[1])
    eps = (x - row["a_t"] * x0) / row["n_t"]                        # ε̂ consistent with clipping
  x = row["a_s"] * x0 + row["c2"] * eps                             # "direction pointing to x_t"
  return x + row["c1"] * z if s.eta > 0 else x                     # random noise σ_t z


def _langevin_step(eps_fn, plan: Plan, x0_range, x, row, z):
  del x0_range
  t = jnp.full((x.shape[0],), row["model_t"], jnp.int32)
  score = plan.process.eps_to_score(as_prediction(eps_fn(x, t)).eps, t)
  return _langevin_update(x, score, row["alpha"], z, plan.settings.langevin_form)


STEPS = {"ancestral": _ancestral_step, "ddim": _ddim_step,
         "annealed_langevin": _langevin_step}


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
  step = functools.partial(STEPS[plan.settings.method], eps_fn, plan, x0_range)
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

  if plan.settings.method == "annealed_langevin" and plan.settings.denoise:
    # NCSNv2: one Tweedie step at the smallest level, x + σ_min² s(x, σ_min).
    t0 = jnp.zeros((x.shape[0],), jnp.int32)
    eps = as_prediction(eps_fn(x, t0)).eps
    x = x + plan.process.noise_std(0) ** 2 * plan.process.eps_to_score(eps, t0)
  return x, traj


def run_plan(plan: Plan, eps_fn: Callable, shape: Sequence[int], key: Array,
             init: Optional[Array] = None,
             x0_range: Optional[Tuple[float, float]] = (-1.0, 1.0), trajectory_every: int = 0):
  """Runs a plan from x_T (drawn from ``key`` or given as ``init``); see :func:`sample`."""
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


def sample(eps_fn: Callable, process, shape: Sequence[int], key: Array, sampling_cfg=None,
           init: Optional[Array] = None, x0_range: Optional[Tuple[float, float]] = (-1.0, 1.0),
           trajectory_every: int = 0):
  """Draws samples by walking the process's levels back with ``sampling_cfg.method``.

  Args:
    eps_fn: (x_t [B, ...] float32, t int32 [B]) -> ε̂ (x_t's shape), or (ε̂, v)
      for learned-variance models (the ancestral step then uses learned_range).
    process: VPProcess or VEProcess (diffusion.make_process).
    shape: [B, ...] of the samples, e.g. (64, 32, 32, 3).
    key: PRNG key (x_T draw and every step's noise derive from it).
    sampling_cfg: config.sampling (ConfigDict, dict or SamplingConfig).
    init: optional x_T of ``shape`` (replaces the draw from sampling_cfg.init).
    x0_range: (lo, hi) used to clip x̂₀ when sampling_cfg.clip_x0; None never clips.
      [-1, 1] for VP data, [0, 1] for NCSN data.
    trajectory_every: k > 0 also returns the chain state every k steps,
      trajectory[m] = state after m·k steps, m = 0..N//k (0 = x_T), where N is
      the number of scan steps (ancestral/DDIM: levels visited; Langevin:
      L·n_steps_each, before the optional denoising step).
  Returns:
    samples [shape] float32, or (samples, trajectory [N//k + 1, *shape]).
  Raises:
    ConfigError: invalid sampling settings (one line naming the field).
  """
  return run_plan(make_plan(process, sampling_cfg), eps_fn, shape, key, init, x0_range,
                  trajectory_every)


def langevin(score_fn: Callable[[Array], Array], x: Array, key: Array, step_size: float,
             num_steps: int, form: str = "paper") -> Array:
  """Plain (single-level) Langevin dynamics with a fixed step, one jitted scan.

  Args:
    score_fn: x -> ∇ log p(x), x's shape.
    x: initial points [B, ...]; key: PRNG key.
    step_size: ε; form: 'paper' (x + ε/2 s + √ε z, NCSN's toy runner) or 'code'.
  Returns:
    x after ``num_steps`` steps.
  """
  SamplingConfig(langevin_form=form)  # checks the form

  @jax.jit
  def run(x, key):
    def body(x, i):
      z = jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
      return _langevin_update(x, score_fn(x), step_size, z, form), None
    return jax.lax.scan(body, x, jnp.arange(num_steps))[0]

  return run(jnp.asarray(x, jnp.float32), key)

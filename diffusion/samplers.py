"""Samplers: DDPM ancestral, DDIM and annealed Langevin dynamics, each one jitted scan.

All samplers meet the model only through ``eps_fn(x_t, t)``:
  x_t: [B, ...] float32, t: int32 [B] (0 = least noise) -> ε̂ with x_t's shape,
  or a tuple (ε̂, v) for learned-variance models (v in [−1, 1], Improved DDPM
  "learned_range"). Any function works: a trained network, an analytic
  Gaussian-mixture ε, an external model.

Public API:
  sample(eps_fn, process, shape, key, sampling_cfg, init=None, x0_range=(-1, 1),
         trajectory_every=0) -> samples  (or (samples, trajectory))
  settings_from_config(sampling_cfg) -> SamplerSettings (validated)
  ddim_timesteps(T, num_steps, skip_type) -> τ (ascending int array)
  space_timesteps(T, section_counts) -> kept steps for respaced ancestral sampling
  respace(process, timesteps) -> process over the kept steps only
  ddim_coefficients(process, timesteps, eta) -> per-step DDIM coefficients
  langevin(score_fn, x, key, step_size, num_steps, form) -> plain Langevin dynamics

Methods (config.sampling.method):
  ancestral: x_{t−1} = μ_θ(x_t, t) + 𝟙[t>0]·exp(½ log Σ)·z (DDPM Alg. 2), with
    x̂₀ optionally clipped to x0_range (DDPM does); Σ fixedlarge (β_t) or
    fixedsmall (β̃_t), or learned_range when eps_fn returns (ε̂, v). With
    0 < num_steps < T the chain runs on ``space_timesteps(T, str(num_steps))``
    with respaced β_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}} (Improved DDPM); the model still
    sees the original t = τ_i.
  ddim: x_s = a_s x̂₀ + √(n_s² − c₁²)·ε̂ + c₁ z with c₁ = η·(posterior std of
    x_s | x_t, x₀), a = signal scale, n = noise std, s the previous element of
    τ (−1 at the end: a = 1, n = 0). For VP this is ermongroup/ddim's
    generalized_steps. When x̂₀ is clipped, ε̂ is re-derived from the clipped x̂₀
    (Improved DDPM's ddim_sample).
  annealed_langevin: for levels i = L−1..0 (largest σ first), n_steps_each steps
    x ← x + α s + √(2α) z ('code', NCSN/NCSNv2 code) or x + α/2 s + √α z
    ('paper', NCSN Alg. 1), α = ε·σ_i²/σ_min², s = eps_to_score(ε̂); optional
    final denoising x ← x + σ_min² s(x, σ_min) (NCSNv2).

Passing ``jax.tree_util.Partial(apply_fn, params)`` as eps_fn makes the
parameters arguments of the compiled function (instead of constants baked into
it) and lets repeated calls with new parameters reuse the compilation.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from diffusion.config_fields import get_field
from diffusion.errors import ConfigError, check_choice, check_positive

Array = jax.Array

METHODS = ("ancestral", "ddim", "annealed_langevin")
SKIP_TYPES = ("uniform", "quad")
LANGEVIN_FORMS = ("code", "paper")
INITS = ("prior", "uniform")
VAR_TYPES = ("fixedlarge", "fixedsmall", "learned_range")

_DEFAULTS = dict(method="ancestral", num_steps=0, skip_type="uniform", eta=0.0,
                 n_steps_each=100, step_size=2e-5, langevin_form="code", denoise=False,
                 init="prior", clip_x0=True, var_type="fixedlarge")


@dataclasses.dataclass(frozen=True)
class SamplerSettings:
  """Validated sampling settings (hashable: a static argument of the jitted sampler)."""
  method: str = "ancestral"
  num_steps: int = 0
  skip_type: str = "uniform"
  eta: float = 0.0
  n_steps_each: int = 100
  step_size: float = 2e-5
  langevin_form: str = "code"
  denoise: bool = False
  init: str = "prior"
  clip_x0: bool = True
  var_type: str = "fixedlarge"


def _get(cfg, name):
  return get_field(cfg, name, _DEFAULTS[name])


def _check_int(field: str, value, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ConfigError(f"{field}={value!r} is not valid; it must be an integer >= {minimum}.")
  return int(value)


def _check_bool(field: str, value) -> bool:
  if not isinstance(value, (bool, np.bool_)):
    raise ConfigError(f"{field}={value!r} is not valid; it must be True or False.")
  return bool(value)


def settings_from_config(sampling_cfg) -> SamplerSettings:
  """Reads and validates ``config.sampling`` (ConfigDict, dict, None or SamplerSettings).

  Fields: method, num_steps, skip_type, eta, n_steps_each, step_size,
  langevin_form, denoise, init, clip_x0, var_type (missing ones take the
  defaults of configs/base.py). Raises ConfigError naming the bad field.
  """
  if isinstance(sampling_cfg, SamplerSettings):
    sampling_cfg = dataclasses.asdict(sampling_cfg)
  g = functools.partial(_get, sampling_cfg)
  check_choice("sampling.method", g("method"), METHODS)
  num_steps = _check_int("sampling.num_steps", g("num_steps"), 0)
  check_choice("sampling.skip_type", g("skip_type"), SKIP_TYPES)
  check_positive("sampling.eta", g("eta"), allow_zero=True)
  n_steps_each = _check_int("sampling.n_steps_each", g("n_steps_each"), 1)
  check_positive("sampling.step_size", g("step_size"))
  check_choice("sampling.langevin_form", g("langevin_form"), LANGEVIN_FORMS)
  denoise = _check_bool("sampling.denoise", g("denoise"))
  check_choice("sampling.init", g("init"), INITS)
  clip_x0 = _check_bool("sampling.clip_x0", g("clip_x0"))
  check_choice("sampling.var_type", g("var_type"), VAR_TYPES)
  return SamplerSettings(
      method=g("method"), num_steps=num_steps, skip_type=g("skip_type"),
      eta=float(g("eta")), n_steps_each=n_steps_each, step_size=float(g("step_size")),
      langevin_form=g("langevin_form"), denoise=denoise, init=g("init"), clip_x0=clip_x0,
      var_type=g("var_type"))


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
  check_choice("sampling.skip_type", skip_type, SKIP_TYPES)
  if skip_type == "uniform":
    return np.arange(0, T, T // S, dtype=np.int64)
  seq = np.linspace(0.0, np.sqrt(T * 0.8), S) ** 2
  return np.array([int(s) for s in seq], dtype=np.int64)


def space_timesteps(num_timesteps: int, section_counts) -> np.ndarray:
  """Kept steps for respaced sampling, as Improved DDPM's ``space_timesteps``.

  Args:
    num_timesteps: T of the original process.
    section_counts: "K" / [K1, K2, ...]: split 0..T−1 into equal sections and
      take K_i evenly strided (rounded) steps from section i, both ends
      included; or "ddimK": range(0, T, stride) with exactly K elements.
  Returns:
    sorted unique int64 array of kept steps.
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
    steps += [start + round(k * stride) for k in range(count)]
    start += size
  return np.array(sorted(set(steps)), dtype=np.int64)


def respace(process, timesteps: Sequence[int]):
  """The process restricted to the kept ``timesteps`` (ascending), as a new process.

  VP: β_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}} with ᾱ_{τ_{−1}} = 1 (Improved DDPM
  respace.py); VE: the σ ladder σ_τ. Index i of the result corresponds to the
  original step τ_i. Needs a concrete (non-traced) process.
  """
  from diffusion.processes import VEProcess, VPProcess  # pylint: disable=import-outside-toplevel
  tau = np.asarray(timesteps, np.int64)
  try:
    if isinstance(process, VEProcess):
      return VEProcess.from_sigmas(np.asarray(process.sigmas, np.float64)[tau])
    ac = np.asarray(process.alphas_cumprod, np.float64)[tau]
  except jax.errors.TracerArrayConversionError as e:
    raise ValueError("respaced sampling needs a concrete process; call sample() "
                     "outside jax.jit (it jits itself).") from e
  ac_prev = np.append(1.0, ac[:-1])
  return VPProcess.from_betas(1.0 - ac / ac_prev)


def ddim_coefficients(process, timesteps: Sequence[int], eta: float) -> dict:
  """Per-step DDIM coefficients along τ (ascending), for the step τ_j -> τ_{j−1}.

  Returns a dict of float32 [S] arrays (index j = the step leaving τ_j):
    a_t, n_t: signal scale and noise std at τ_j;
    a_s, n_s: the same at τ_{j−1} (a = 1, n = 0 before τ_0);
    c1: noise std η·√(n_s² (n_t² − (a_t/a_s)² n_s²)/n_t²) — for VP and
      consecutive steps with η = 1 this is √β̃_t;
    c2: √(n_s² − c1²), the weight on ε̂.
  """
  tau = jnp.asarray(np.asarray(timesteps, np.int32))
  a_t, n_t = process.signal_scale(tau), process.noise_std(tau)
  a_s = jnp.concatenate([jnp.ones((1,), a_t.dtype), a_t[:-1]])
  n_s = jnp.concatenate([jnp.zeros((1,), n_t.dtype), n_t[:-1]])
  r = a_t / a_s
  post_var = n_s ** 2 * jnp.maximum(n_t ** 2 - r ** 2 * n_s ** 2, 0.0) / n_t ** 2
  c1 = eta * jnp.sqrt(post_var)
  c2 = jnp.sqrt(jnp.maximum(n_s ** 2 - c1 ** 2, 0.0))
  return dict(a_t=a_t, n_t=n_t, a_s=a_s, n_s=n_s, c1=c1, c2=c2)


# ---------------------------------------------------------------------------
# Langevin
# ---------------------------------------------------------------------------


def _langevin_update(x: Array, score: Array, alpha, z: Array, form: str) -> Array:
  """One Langevin step: 'code' x + α s + √(2α) z; 'paper' x + α/2 s + √α z."""
  if form == "code":
    return x + alpha * score + jnp.sqrt(2.0 * alpha) * z
  return x + 0.5 * alpha * score + jnp.sqrt(alpha) * z


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
  check_choice("form", form, LANGEVIN_FORMS)

  @jax.jit
  def run(x, key):
    def body(x, i):
      z = jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
      return _langevin_update(x, score_fn(x), step_size, z, form), None
    return jax.lax.scan(body, x, jnp.arange(num_steps))[0]

  return run(jnp.asarray(x, jnp.float32), key)


# ---------------------------------------------------------------------------
# eps_fn as (static, dynamic) parts
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


def _split_eps_fn(eps_fn):
  leaves, treedef = jax.tree_util.tree_flatten(eps_fn)
  is_array = tuple(isinstance(l, (jax.Array, np.ndarray)) for l in leaves)
  dynamic = [l for l, a in zip(leaves, is_array) if a]
  static = tuple(l for l, a in zip(leaves, is_array) if not a)
  return _EpsSpec(treedef, is_array, static), dynamic


def _split_output(out):
  """eps_fn output -> (eps, v or None)."""
  if isinstance(out, (tuple, list)):
    if len(out) != 2:
      raise ValueError("eps_fn must return eps or a pair (eps, v).")
    return out[0], out[1]
  return out, None


# ---------------------------------------------------------------------------
# The jitted sampler
# ---------------------------------------------------------------------------


def _ancestral_step(eps_fn, process, settings, plan, x0_range, key, x, i):
  """Step i (0-based) of the ancestral chain: leaves respaced index j = N−1−i."""
  model_t = jnp.asarray(np.asarray(plan, np.int32))
  n = len(plan)
  j = n - 1 - i
  b = x.shape[0]
  eps, v = _split_output(eps_fn(x, jnp.full((b,), model_t[j], jnp.int32)))
  if v is None and settings.var_type == "learned_range":
    raise ConfigError("sampling.var_type='learned_range' needs an eps_fn that returns "
                      "(eps, v); this one returns eps only.")
  var_type = "learned_range" if v is not None else settings.var_type
  clip = x0_range if settings.clip_x0 else None
  mean, log_var, _ = process.p_mean_variance(
      x, jnp.full((b,), j, jnp.int32), eps, var_type, v=v, clip_range=clip)
  z = jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
  return mean + jnp.where(j > 0, jnp.exp(0.5 * log_var), 0.0) * z


def _ddim_step(eps_fn, coefs, settings, plan, x0_range, key, x, i):
  """Step i of DDIM: from τ_j to τ_{j−1} (j = N−1−i; τ_{−1} = the data)."""
  n = len(plan)
  j = n - 1 - i
  tau = jnp.asarray(np.asarray(plan, np.int32))
  b = x.shape[0]
  eps, _ = _split_output(eps_fn(x, jnp.full((b,), tau[j], jnp.int32)))
  a_t, n_t, a_s = coefs["a_t"][j], coefs["n_t"][j], coefs["a_s"][j]
  c1, c2 = coefs["c1"][j], coefs["c2"][j]
  x0 = (x - n_t * eps) / a_t
  if settings.clip_x0 and x0_range is not None:
    x0 = jnp.clip(x0, x0_range[0], x0_range[1])
    eps = (x - a_t * x0) / n_t  # keep ε̂ consistent with the clipped x̂₀
  x_next = a_s * x0 + c2 * eps
  if settings.eta > 0:
    z = jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
    x_next = x_next + c1 * z
  return x_next


def _langevin_step(eps_fn, process, settings, key, x, i):
  """Langevin step i: level L−1 − i // n_steps_each (largest σ first)."""
  L, k = process.num_timesteps, settings.n_steps_each
  level = L - 1 - i // k
  b = x.shape[0]
  t = jnp.full((b,), level, jnp.int32)
  sigma = process.noise_std(level)
  sigma_min = process.noise_std(0)
  alpha = settings.step_size * (sigma / sigma_min) ** 2
  eps, _ = _split_output(eps_fn(x, t))
  score = process.eps_to_score(eps, t)
  z = jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
  return _langevin_update(x, score, alpha, z, settings.langevin_form)


@functools.partial(jax.jit, static_argnames=("spec", "settings", "plan", "shape", "x0_range",
                                             "trajectory_every", "has_init"))
def _run(dynamic, process, key, init, *, spec, settings, plan, shape, x0_range,
         trajectory_every, has_init):
  eps_fn = spec.rebuild(dynamic)
  init_key, loop_key = jax.random.split(key)
  if has_init:
    x = init.astype(jnp.float32)
  elif settings.init == "uniform":
    x = jax.random.uniform(init_key, shape, jnp.float32)
  else:
    x = process.prior_sample(init_key, shape).astype(jnp.float32)

  if settings.method == "ancestral":
    num = len(plan)
    step = functools.partial(_ancestral_step, eps_fn, process, settings, plan, x0_range,
                             loop_key)
  elif settings.method == "ddim":
    num = len(plan)
    coefs = ddim_coefficients(process, plan, settings.eta)
    step = functools.partial(_ddim_step, eps_fn, coefs, settings, plan, x0_range, loop_key)
  else:
    num = process.num_timesteps * settings.n_steps_each
    step = functools.partial(_langevin_step, eps_fn, process, settings, loop_key)

  def run_steps(x, idx):
    return jax.lax.scan(lambda x, i: (step(x, i), None), x, idx)[0]

  traj = None
  if trajectory_every > 0:
    k = trajectory_every
    chunks = num // k
    idx = jnp.arange(chunks * k, dtype=jnp.int32).reshape(chunks, k)
    x_init = x
    x, states = jax.lax.scan(lambda x, row: (run_steps(x, row),) * 2, x, idx)
    traj = jnp.concatenate([x_init[None], states], axis=0)
    x = run_steps(x, jnp.arange(chunks * k, num, dtype=jnp.int32))
  else:
    x = run_steps(x, jnp.arange(num, dtype=jnp.int32))

  if settings.method == "annealed_langevin" and settings.denoise:
    # NCSNv2: one Tweedie step at the smallest level, x + σ_min² s(x, σ_min).
    t0 = jnp.zeros((x.shape[0],), jnp.int32)
    eps, _ = _split_output(eps_fn(x, t0))
    x = x + process.noise_std(0) ** 2 * process.eps_to_score(eps, t0)
  return x, traj


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
    sampling_cfg: config.sampling (ConfigDict/dict/SamplerSettings; see
      settings_from_config for the fields).
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
  settings = settings_from_config(sampling_cfg)
  shape = tuple(int(s) for s in shape)
  T = int(process.num_timesteps)
  trajectory_every = _check_int("trajectory_every", trajectory_every, 0)
  plan: Tuple[int, ...] = ()
  if settings.method == "ancestral":
    if settings.num_steps in (0, T):
      plan = tuple(range(T))
    elif settings.num_steps > T:
      raise ConfigError(f"sampling.num_steps={settings.num_steps} is not valid for ancestral; "
                        f"it must be <= diffusion.num_timesteps={T} (0 = all).")
    else:
      kept = space_timesteps(T, str(settings.num_steps))
      process = respace(process, kept)
      plan = tuple(int(t) for t in kept)
  elif settings.method == "ddim":
    plan = tuple(int(t) for t in ddim_timesteps(T, settings.num_steps, settings.skip_type))
  elif settings.num_steps not in (0, T):
    raise ConfigError(f"sampling.num_steps={settings.num_steps} is not valid for "
                      f"annealed_langevin, which visits every level; set it to 0.")
  if init is not None:
    init = jnp.asarray(init, jnp.float32)
    if tuple(init.shape) != shape:
      raise ValueError(f"init has shape {tuple(init.shape)}, expected {shape}.")
  spec, dynamic = _split_eps_fn(eps_fn)
  x_range = None if x0_range is None else (float(x0_range[0]), float(x0_range[1]))
  x, traj = _run(dynamic, process, key, init, spec=spec, settings=settings, plan=plan,
                 shape=shape, x0_range=x_range, trajectory_every=trajectory_every,
                 has_init=init is not None)
  return (x, traj) if trajectory_every > 0 else x

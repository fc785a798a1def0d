"""Samplers: a registry of plug-ins, each one module with a plan and a short step.

  timesteps.py   DDIM's τ and Improved DDPM's respacing (which levels a chain visits)
  chain.py       Plan and the one jitted ``lax.scan`` every plan-based sampler runs
  ancestral.py   DDPM Algorithm 2 (fixed or learned variance; respaced when shortened)
  ddim.py        DDIM with η and uniform / quadratic τ
  langevin.py    NCSN's annealed Langevin dynamics, NCSNv2's final denoising
  sigmas.py      a discrete process in EDM's σ coordinates (x̂ = x/s, σ = n/s)
  pc.py          score_sde's predictor–corrector (Alg. 2/3)
  ode.py         the probability-flow ODE (diffrax), encode/decode, log-likelihood
  heun.py        EDM's Heun sampler (Alg. 1, stochastic Alg. 2), ρ = 7 σ steps
  multistep.py   the step and plan of the linear multistep samplers below
  dpm_solver.py  DPM-Solver++(2M / 3M) and SDE-DPM-Solver++(2M)
  ipndm.py       iPNDM: 4th-order Adams–Bashforth in σ on EDM's ρ = 7 grid
  unipc.py       UniPC: predictor–corrector, order 3, B(h) = bh2, data prediction
  deis.py        DEIS-tAB3: Adams–Bashforth in t on the exponential integrator

All samplers meet the model only through ``eps_fn(x_t, t)``:
  x_t: [B, ...] float32, t: int32 [B] (0 = least noise) -> ε̂ with x_t's shape,
  or (ε̂, v) for learned-variance models (read by ``model_fn.as_prediction``).
  With ``sigma_policy='interpolate'`` (heun, ode, dpm_solver, ipndm, unipc, deis) t is
  float32 [B]: fractional levels in [0, T − 1], log σ linear between levels (what a
  network makes of them: core/model_fn.py, "Fractional levels").
Any function works: a trained network, an analytic mixture ε, an external model.

A sampler module defines, with plain keyword options (EDM's ``edm_sampler(net, latents,
num_steps=18, ...)``; nothing here reads a config):

  DESCRIPTION    one line: what it is (``sample.py --sampler`` help, docs/samplers.md)
  make_plan(process, *, <options>) -> Plan     its rows and step, run by
                 :func:`chain.run_plan` — or, when it runs its own loop,
  sample(eps_fn, process, shape, key, x_T=None, x0_range=(-1, 1), *, <options>)
  OPTIONS        ``options.declare(entry, name=Option(doc, choices / rule), ...)``: the
                 ``sampling.<name>`` fields it reads; defaults are the entry's own
  check(num_timesteps, options)   optional: its rules (ConfigError naming the field)
  describe(num_timesteps, options) optional: words about its cost after "N steps"
  NAMED_BY       optional: the options that tell its samples apart in an output name
                 (DDIM's ``eta``)

:data:`SAMPLERS` is the one list of names (``sampling.method`` takes its keys); the
config's sampling section is derived from the modules' ``OPTIONS`` (:func:`declared`).
A notebook draws with ``sample(eps_fn, process, shape, key, method="ddim",
num_steps=50)``, or ``ddim.make_plan(process, num_steps=50, eta=0.0)`` and ``run_plan``.
"""

import math
from types import ModuleType
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import jax
import numpy as np

from diffusion.errors import ConfigError, check_choice, did_you_mean
from diffusion.options import Option, declare, union
from diffusion.samplers import (ancestral, chain, ddim, deis, dpm_solver, heun, ipndm, langevin,
                               ode, pc, unipc)
from diffusion.samplers.chain import Plan, run_plan, split_fn
from diffusion.samplers.ddim import ddim_coefficients
from diffusion.samplers.langevin import langevin_dynamics
from diffusion.samplers.timesteps import ddim_timesteps, space_timesteps

__all__ = ["SAMPLERS", "Plan", "Sampler", "check", "cost_note", "ddim_coefficients",
           "ddim_timesteps", "declared", "describe", "descriptions", "effective_steps",
           "langevin_dynamics", "make_plan", "named_options", "option_names", "reads",
           "run_plan", "sample", "space_timesteps", "split_fn"]

# Plain dict, sampling.method -> the module that implements it (written out here only).
SAMPLERS: Dict[str, ModuleType] = {
    "ancestral": ancestral,
    "ddim": ddim,
    "annealed_langevin": langevin,
    "pc": pc,
    "ode": ode,
    "heun": heun,
    "dpm_solver": dpm_solver,
    "ipndm": ipndm,
    "unipc": unipc,
    "deis": deis,
}
DEFAULT_METHOD = next(iter(SAMPLERS))   # the first: DDPM's own sampler


def _plan_based(module: ModuleType) -> bool:
  return hasattr(module, "make_plan")


def reads(method: str) -> Dict[str, Option]:
  """The options the sampler ``method`` reads: its own, and for a plan-based sampler
  those of the chain that runs its plan (how x_T is drawn)."""
  module = SAMPLERS[method]
  own = dict(getattr(module, "OPTIONS", {}))
  return {**own, **chain.OPTIONS} if _plan_based(module) else own


def declared() -> Tuple[Dict[str, Option], Dict[str, Tuple[str, ...]]]:
  """Every sampling option of every registered sampler, and which samplers read each:
  ({name: Option}, {name: sampler names}); ``method`` comes first and is read by all.
  Options several samplers read must be declared equal (TypeError otherwise)."""
  options, readers = union([(name, reads(name)) for name in SAMPLERS])
  return {**COMMON, **options}, {**{k: tuple(SAMPLERS) for k in COMMON}, **readers}


def option_names() -> Tuple[str, ...]:
  """The names :func:`sample` and :class:`Sampler` accept besides the arrays."""
  return tuple(declared()[0])


def _check_value(name: str, option: Option, value) -> None:
  """One given option against its declaration (choices, or a finite number within its
  rule, or a bool): a ConfigError of one line naming ``sampling.<name>``. The config
  schema checks the same for a config; this covers plain keyword calls."""
  if option.choices is not None:
    check_choice(f"sampling.{name}", value, option.choices)
    return
  kind = option.kind
  if kind is bool:
    ok, what = isinstance(value, (bool, np.bool_)), "True or False"
  elif kind in (int, float):
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    is_num = is_int or isinstance(value, (float, np.floating))
    ok = (is_int if kind is int else is_num and math.isfinite(value))
    ok = ok and (option.rule is None or bool(option.rule.test(value)))
    what = ("an integer" if kind is int else "a finite number") + \
        (f" {option.rule.text}" if option.rule else "")
  else:
    return
  if not ok:
    raise ConfigError(f"sampling.{name}={value!r} is not valid; it must be {what}.")


def _with_defaults(method: str, options: Mapping) -> Dict:
  """``options`` completed with every declared default; an unknown name or a value its
  declaration refuses fails in one line."""
  every = declared()[0]
  for name in options:
    if name not in every:
      raise ConfigError(f"sampling.{name} is not a sampling option{did_you_mean(name, every)}; "
                        f"the samplers take: {', '.join(every)}.")
  check_choice("sampling.method", method, SAMPLERS)
  for name, value in options.items():
    _check_value(name, every[name], value)
  return {**{k: o.default for k, o in every.items()}, **options, "method": method}


def check(num_timesteps: int, method: str, **options) -> None:
  """The rules of ``method`` on its options for a process of ``num_timesteps`` levels
  (ConfigError with one line naming the ``sampling.<field>``)."""
  full = _with_defaults(method, options)
  n, T = full["num_steps"], int(num_timesteps)
  own_check = getattr(SAMPLERS[method], "check", None)
  if own_check is not None:
    own_check(T, full)
  # Steps between the levels (fractional levels) may outnumber them; on the levels they
  # cannot.
  between = full.get("sigma_policy") == "interpolate" and "sigma_policy" in reads(method)
  if n > T and not between:
    raise ConfigError(f"sampling.num_steps={n} is not valid for {method}; it "
                      f"must be <= diffusion.num_timesteps={T} (0 = every level"
                      + (", or sampling.sigma_policy='interpolate' to step between levels)."
                         if "sigma_policy" in reads(method) else ")."))


def effective_steps(num_steps: int, num_timesteps: int, method: str = "") -> int:
  """Steps a chain takes: ``num_steps``; when it is 0, the sampler ``method``'s own
  ``DEFAULT_STEPS`` (heun's 18 σ steps, dpm_solver's 20, ...) or else every level.
  With ``sigma_policy='interpolate'`` a chain may take more steps than there are levels."""
  n, levels = int(num_steps), int(num_timesteps)
  default = getattr(SAMPLERS[method], "DEFAULT_STEPS", 0) if method else 0
  if n == 0 and default:
    return int(default)
  return n if n > 0 else levels


def cost_note(num_timesteps: int, method: str, **options) -> str:
  """The sampler's own words about its cost beyond its steps ("100 Langevin steps each"
  for annealed Langevin), or ""."""
  own = getattr(SAMPLERS[method], "describe", None)
  return "" if own is None else own(num_timesteps, _with_defaults(method, options))


def describe(num_timesteps: int, method: str, **options) -> str:
  """How a sampler draws, for a log line: ``"ddim, 50 steps"``, and the sampler's own
  words about its cost (annealed Langevin: the steps at each level)."""
  steps = effective_steps(_with_defaults(method, options)["num_steps"], num_timesteps, method)
  note = cost_note(num_timesteps, method, **options)
  return f"{method}, {steps} steps" + (f", {note}" if note else "")


def named_options(method: str, **options) -> Dict:
  """{option: value} of the options that tell this sampler's samples apart in an output
  folder's name and its meta.json (DDIM: ``eta``); {} for most samplers."""
  full = _with_defaults(method, options)
  return {k: full[k] for k in getattr(SAMPLERS[method], "NAMED_BY", ())}


def descriptions() -> Dict[str, str]:
  """{sampler name: its one-line description}, in registry order."""
  return {name: getattr(module, "DESCRIPTION", "") for name, module in SAMPLERS.items()}


class Sampler:
  """One sampler with its options, checked, and a chain's rows computed once (on the
  host, float64): call it to draw. ``plan`` is the chain of a plan-based sampler, None
  for one that runs its own loop (the adaptive ODE)."""

  def __init__(self, process, method: str, **options):
    check(process.num_timesteps, method, **options)
    full = _with_defaults(method, options)
    self.method, self.module = method, SAMPLERS[method]
    self._options = {k: full[k] for k in getattr(self.module, "OPTIONS", {})}
    self._chain = {k: full[k] for k in chain.OPTIONS}
    self.process = process
    self.plan: Optional[Plan] = (self.module.make_plan(process, **self._options)
                                 if _plan_based(self.module) else None)

  def __call__(self, eps_fn: Callable, shape: Sequence[int], key: jax.Array,
               x_T: Optional[jax.Array] = None,
               x0_range: Optional[Tuple[float, float]] = (-1.0, 1.0),
               trajectory_every: int = 0,
               on_progress: Optional[Callable[[int, int], None]] = None):
    """Samples [shape] float32, or (samples, trajectory) (see :func:`sample`)."""
    if self.plan is not None:
      return run_plan(self.plan, eps_fn, shape, key, x_T, x0_range, trajectory_every,
                      on_progress, **self._chain)
    if trajectory_every:
      raise ConfigError(f"sampling.method={self.method!r} runs its own loop and keeps no "
                        "trajectory; use trajectory_every=0.")
    return self.module.sample(eps_fn, self.process, shape, key, x_T, x0_range, **self._options)


def make_plan(process, method: str, **options) -> Plan:
  """The chain of a plan-based sampler with these options, checked (ValueError for a
  sampler that runs its own loop)."""
  plan = Sampler(process, method, **options).plan
  if plan is None:
    raise ValueError(f"sampling.method={method!r} runs its own loop; it has no plan.")
  return plan


def sample(eps_fn: Callable, process, shape: Sequence[int], key: jax.Array,
           x_T: Optional[jax.Array] = None,
           x0_range: Optional[Tuple[float, float]] = (-1.0, 1.0), trajectory_every: int = 0,
           *, method: str = DEFAULT_METHOD, **options):
  """Draws samples by walking the process's levels back with the sampler ``method``.

  Args:
    eps_fn: (x_t [B, ...] float32, t int32 [B]) -> ε̂ (x_t's shape), or (ε̂, v)
      for learned-variance models (the ancestral step then uses learned_range).
    process: VPProcess or VEProcess (diffusion.make_process).
    shape: [B, ...] of the samples, e.g. (64, 32, 32, 3).
    key: PRNG key (x_T draw and every step's noise derive from it).
    x_T: optional start of ``shape`` (replaces the draw ``init`` describes).
    x0_range: (lo, hi) used to clip x̂₀ when the sampler clips (``clip_x0``); None
      never clips. [-1, 1] for VP data, [0, 1] for NCSN data.
    trajectory_every: k > 0 also returns the chain state every k steps,
      trajectory[m] = state after m·k steps, m = 0..N//k (0 = x_T), where N is
      the number of scan steps (ancestral/DDIM: levels visited; Langevin:
      L·n_steps_each, before the optional denoising step).
    method: a key of :data:`SAMPLERS`; ``options``: its keyword options
      (``num_steps=50, eta=0.0``, ...; :func:`declared` lists them with their defaults;
      options another sampler reads are accepted and unused).
  Returns:
    samples [shape] float32, or (samples, trajectory [N//k + 1, *shape]).
  Raises:
    ConfigError: an unknown option or one the sampler's rules refuse (one line).
  """
  return Sampler(process, method, **options)(eps_fn, shape, key, x_T, x0_range,
                                             trajectory_every)


# The option every sampler takes: which one draws (its default is sample()'s).
COMMON = declare(sample, method=Option(f"{', '.join(SAMPLERS)} (docs/samplers.md)",
                                       choices=SAMPLERS))

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
  dpm_solver.py  DPM-Solver++(2M) on the discrete-time schedule

All samplers meet the model only through ``eps_fn(x_t, t)``:
  x_t: [B, ...] float32, t: int32 [B] (0 = least noise) -> ε̂ with x_t's shape,
  or (ε̂, v) for learned-variance models (read by ``model_fn.as_prediction``).
Any function works: a trained network, an analytic mixture ε, an external model.

A sampler module defines ``make_plan(process, settings) -> Plan`` (its rows and
step, run by :func:`chain.run_plan`), or ``sample(eps_fn, process, shape, key,
settings, init, x0_range)`` when it runs its own loop; optionally
``check(settings, num_timesteps)`` for rules on its settings. ``settings`` is the
typed ``config.sampling`` (the entry point parsed it); nothing here reads a config.
:data:`SAMPLERS` is the one list of names (``sampling.method`` takes its keys).
"""

from types import ModuleType
from typing import Callable, Dict, Optional, Sequence, Tuple

import jax

from diffusion.errors import ConfigError
from diffusion.samplers import ancestral, ddim, dpm_solver, heun, langevin, ode, pc
from diffusion.samplers.chain import Plan, run_plan, split_fn
from diffusion.samplers.ddim import ddim_coefficients
from diffusion.samplers.langevin import langevin as langevin_dynamics
from diffusion.samplers.timesteps import ddim_timesteps, space_timesteps

__all__ = ["SAMPLERS", "Plan", "check_num_steps", "ddim_coefficients", "ddim_timesteps",
           "effective_steps", "langevin_dynamics", "make_plan", "run_plan", "sample",
           "space_timesteps", "split_fn"]

# Plain dict, sampling.method -> the module that implements it (written out here only).
SAMPLERS: Dict[str, ModuleType] = {
    "ancestral": ancestral,
    "ddim": ddim,
    "annealed_langevin": langevin,
    "pc": pc,
    "ode": ode,
    "heun": heun,
    "dpm_solver": dpm_solver,
}


def check_num_steps(settings, num_timesteps: int) -> None:
  """sampling.num_steps against T for the chosen method (ConfigError naming the field)."""
  s, T = settings, int(num_timesteps)
  if s.method == "annealed_langevin" and s.num_steps not in (0, T):
    raise ConfigError(f"sampling.num_steps={s.num_steps} is not valid for annealed_langevin, "
                      "which visits every level; set it to 0.")
  if s.num_steps > T:
    raise ConfigError(f"sampling.num_steps={s.num_steps} is not valid for {s.method}; it "
                      f"must be <= diffusion.num_timesteps={T} (0 = every level).")
  check = getattr(SAMPLERS[s.method], "check", None)
  if check is not None:
    check(s, T)


def effective_steps(settings, num_timesteps: int) -> int:
  """Levels a chain of ``settings`` visits: ``settings.num_steps``, or all
  ``num_timesteps`` when it is 0 (annealed Langevin takes ``n_steps_each`` at each)."""
  n, levels = int(settings.num_steps), int(num_timesteps)
  return n if 0 < n <= levels else levels


def make_plan(process, settings) -> Plan:
  """The chain that the typed ``settings`` (config.sampling) describe on ``process``."""
  check_num_steps(settings, process.num_timesteps)
  return SAMPLERS[settings.method].make_plan(process, settings)


def sample(eps_fn: Callable, process, shape: Sequence[int], key: jax.Array, settings,
           init: Optional[jax.Array] = None,
           x0_range: Optional[Tuple[float, float]] = (-1.0, 1.0), trajectory_every: int = 0):
  """Draws samples by walking the process's levels back with ``settings.method``.

  Args:
    eps_fn: (x_t [B, ...] float32, t int32 [B]) -> ε̂ (x_t's shape), or (ε̂, v)
      for learned-variance models (the ancestral step then uses learned_range).
    process: VPProcess or VEProcess (diffusion.make_process).
    shape: [B, ...] of the samples, e.g. (64, 32, 32, 3).
    key: PRNG key (x_T draw and every step's noise derive from it).
    settings: the typed config.sampling (``diffusion.sample`` parses dicts).
    init: optional x_T of ``shape`` (replaces the draw from settings.init).
    x0_range: (lo, hi) used to clip x̂₀ when settings.clip_x0; None never clips.
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
  module = SAMPLERS[settings.method]
  if hasattr(module, "sample"):
    if trajectory_every:
      raise ConfigError(f"sampling.method={settings.method!r} runs its own loop and keeps no "
                        "trajectory; use trajectory_every=0.")
    check_num_steps(settings, process.num_timesteps)
    return module.sample(eps_fn, process, shape, key, settings, init, x0_range)
  return run_plan(make_plan(process, settings), eps_fn, shape, key, init, x0_range,
                  trajectory_every)

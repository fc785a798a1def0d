"""NCSN's annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1; NCSNv2 denoising).

For levels i = L−1..0 (largest σ first), n_steps_each steps
x ← x + α s + √(2α) z ('code', the NCSN/NCSNv2 code) or x + α/2 s + √α z
('paper', NCSN Alg. 1: half the step), α = ε·σ_i²/σ_min², s = eps_to_score(ε̂);
optional final denoising x ← x + σ_min² s(x, σ_min) (NCSNv2, Tweedie).

It visits every level, so ``sampling.num_steps`` must be 0 (or T); the chain is
L·n_steps_each network evaluations.
"""

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax.core import FrozenDict

from diffusion.core.model_fn import as_prediction
from diffusion.errors import ConfigError, check_choice
from diffusion.options import AT_LEAST_1, POSITIVE, Option, declare
from diffusion.samplers.chain import DENOISE, Plan, f32, levels

Array = jax.Array
DESCRIPTION = ("NCSN's annealed Langevin dynamics (Song & Ermon 2019, Alg. 1), NCSNv2's "
               "final denoising")
LANGEVIN_FORMS = ("code", "paper")


def make_plan(process, *, n_steps_each: int = 100, step_size: float = 2e-5,
              langevin_form: str = "code", denoise: bool = False) -> Plan:
  """Annealed-Langevin rows: ``n_steps_each`` rows per level, largest σ first, each with
  its step α_i = ε (σ_i/σ_min)², ε = ``step_size`` (NCSN Alg. 1; NCSN/NCSNv2 code)."""
  _, std = process.host_marginal()
  order = np.repeat(np.arange(process.num_timesteps)[::-1], n_steps_each)
  alpha = step_size * (std / std[0]) ** 2
  return Plan(dict(model_t=jnp.asarray(order.astype(np.int32)), alpha=f32(alpha[order])),
              process, step, denoise_step if denoise else None,
              options=FrozenDict(langevin_form=langevin_form))


OPTIONS = declare(
    make_plan, denoise=DENOISE,
    n_steps_each=Option("Langevin steps per sigma level", rule=AT_LEAST_1),
    step_size=Option("Langevin epsilon (NCSN code: 2e-5)", rule=POSITIVE),
    langevin_form=Option("code: x + a s + sqrt(2a) z; paper: x + a/2 s + sqrt(a) z",
                         choices=LANGEVIN_FORMS))


def check(num_timesteps: int, options: Mapping) -> None:
  """The chain visits every level: ``num_steps`` must be 0 (or T)."""
  n = options["num_steps"]
  if n not in (0, num_timesteps):
    raise ConfigError(f"sampling.num_steps={n} is not valid for annealed_langevin, which "
                      "visits every level; set it to 0.")


def describe(num_timesteps: int, options: Mapping) -> str:
  """The words after "N steps" in a log line: the Langevin steps at each level."""
  del num_timesteps
  return f"{options['n_steps_each']} Langevin steps each"


def update(x: Array, score: Array, alpha, z: Array, form: str) -> Array:
  """One Langevin step: 'code' x + α s + √(2α) z; 'paper' x + α/2 s + √α z."""
  if form == "code":
    return x + alpha * score + jnp.sqrt(2.0 * alpha) * z
  return x + 0.5 * alpha * score + jnp.sqrt(alpha) * z


def step(eps_fn, plan: Plan, x0_range, x, row, z):
  del x0_range
  t = levels(row, x)
  score = plan.process.eps_to_score(as_prediction(eps_fn(x, t)).eps, t)
  return update(x, score, row["alpha"], z, plan.options["langevin_form"])


def denoise_step(eps_fn, plan: Plan, x):
  """NCSNv2: one Tweedie step at the smallest level, x + σ_min² s(x, σ_min)."""
  t0 = jnp.zeros((x.shape[0],), jnp.int32)
  eps = as_prediction(eps_fn(x, t0)).eps
  return x + plan.process.noise_std(0) ** 2 * plan.process.eps_to_score(eps, t0)


def langevin_dynamics(score_fn: Callable[[Array], Array], x: Array, key: Array,
                      step_size: float, num_steps: int, form: str = "paper") -> Array:
  """Plain (single-level) Langevin dynamics with a fixed step, one jitted scan.

  Args:
    score_fn: x -> ∇ log p(x), x's shape.
    x: initial points [B, ...]; key: PRNG key.
    step_size: ε; form: 'paper' (x + ε/2 s + √ε z, NCSN's toy runner) or 'code'.
  Returns:
    x after ``num_steps`` steps.
  """
  check_choice("sampling.langevin_form", form, LANGEVIN_FORMS)

  @jax.jit
  def run(x, key):
    def body(x, i):
      z = jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
      return update(x, score_fn(x), step_size, z, form), None
    return jax.lax.scan(body, x, jnp.arange(num_steps))[0]

  return run(jnp.asarray(x, jnp.float32), key)

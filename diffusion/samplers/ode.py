"""The probability-flow ODE (Song et al. 2021, eq. 13), integrated with diffrax.

Coordinates (EDM, Karras et al. 2022, eq. 4; see ``sigmas.py``): x̂ = x/s and
σ = n/s, where the marginal of x̂ is the data convolved with N(0, σ² I) for VP
(σ = √(1/ᾱ − 1)) and VE alike, so the probability-flow ODE of any VP or VE SDE
through these marginals is dx̂/dσ = ε̂(x̂, σ) = −σ ∇_x̂ log p_σ(x̂). It is solved in
τ = log σ (dx̂/dτ = σ ε̂), from τ_max = log σ_{T−1} to τ_min = log σ_0.

Discrete-time models (DDPM's t, NCSN's σ ladder): ε̂ at a continuous σ is the
linear interpolation, in the fractional level u with log σ_u piecewise linear
between the levels' log σ_j, of the network at the two neighbouring levels, each
fed x̂ at its own scale: (1 − w) ε_θ(s_j x̂, j) + w ε_θ(s_{j+1} x̂, j + 1).
(score_sde feeds the fractional label (N−1)t to the DDPM network and rounds it for
discrete NCSN; the interpolation keeps the field continuous for the adaptive
solver and evaluates the network only at its trained levels: 2 network
evaluations per ODE evaluation.) With the exact ε of data p_0, this is the
probability-flow ODE of the continuous process whose σ(u) interpolates the
table, up to the O(Δu²) interpolation of ε.

Solver: ``ode_solver`` tsit5 | dopri5 (adaptive, PID step control with ``rtol``,
``atol``; default 1e-5 as score_sde's RK45). ``nfe`` counts evaluations of the ODE
field: 6 per attempted step + 1 (measured against a counter in the tests);
network evaluations are 2 × nfe. num_steps is not used (0): the solver picks its
steps; the typical count is 50–300 ODE evaluations at 1e-5.

The output x = s_0 x̂(σ_0) is at level 0 (σ_0 = 0.01 for DDPM's linear schedule);
with ``denoise`` one Tweedie step x̂ − σ_0 ε̂(x̂, σ_0) returns the data prediction
(score_sde's ``noise_removal``).
"""

import functools
from typing import Mapping, Tuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from diffusion.errors import ConfigError
from diffusion.options import POSITIVE, Option, declare
from diffusion.samplers.chain import DENOISE, split_fn
from diffusion.samplers.sigmas import eps_at, interpolated_eps, sigma_table

DESCRIPTION = ("the probability-flow ODE (Song et al. 2021, eq. 13), adaptive diffrax solver "
               "in log sigma")
SOLVERS = ("tsit5", "dopri5")
STAGES_PER_STEP = 6  # new field evaluations per attempted step (7 stages, first same as last)
MAX_STEPS = 16384


def check(num_timesteps: int, options: Mapping) -> None:
  """The adaptive solver picks its own steps: ``num_steps`` must be 0."""
  del num_timesteps
  if options["num_steps"] != 0:
    raise ConfigError(f"sampling.num_steps={options['num_steps']} is not valid for ode, whose "
                      "adaptive solver picks its steps; set it to 0 (tolerances: "
                      "sampling.rtol, sampling.atol).")


def _solver(name: str):
  return diffrax.Dopri5() if name == "dopri5" else diffrax.Tsit5()


def _tables(process):
  scale, sig = sigma_table(process)
  return (jnp.asarray(scale, jnp.float32), jnp.asarray(np.log(sig), jnp.float32))


def ode_field(eps_fn, scale, log_sigma):
  """f(τ, x̂) = σ ε̂(x̂, σ), σ = e^τ: the probability-flow ODE in τ = log σ."""
  def f(tau, x_hat, args):
    del args
    return jnp.exp(tau) * interpolated_eps(eps_fn, scale, log_sigma, x_hat, tau)
  return f


@functools.partial(jax.jit, static_argnames=("spec", "solver", "rtol", "atol"))
def _solve(dynamic, tables, x_hat, t0, t1, *, spec, solver, rtol, atol):
  f = ode_field(spec.rebuild(dynamic), *tables)
  sol = diffrax.diffeqsolve(
      diffrax.ODETerm(f), _solver(solver), t0, t1, None, x_hat,
      stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
      saveat=diffrax.SaveAt(t1=True), max_steps=MAX_STEPS)
  return sol.ys[0], STAGES_PER_STEP * sol.stats["num_steps"] + 1


def integrate(eps_fn, process, x_hat, up: bool, *, ode_solver: str, rtol: float,
              atol: float) -> Tuple[jax.Array, int]:
  """x̂ carried from σ_0 to σ_{T−1} (``up``) or back; returns (x̂ [B, ...], nfe). Inside
  ``jax.jit`` (a family's ``sample_fn``) the nfe stays a traced int32 scalar."""
  tables = _tables(process)
  lo, hi = tables[1][0], tables[1][-1]
  t0, t1 = (lo, hi) if up else (hi, lo)
  spec, dynamic = split_fn(eps_fn)
  y, nfe = _solve(dynamic, tables, jnp.asarray(x_hat, jnp.float32), t0, t1, spec=spec,
                  solver=ode_solver, rtol=float(rtol), atol=float(atol))
  try:
    return y, int(nfe)
  except jax.errors.ConcretizationTypeError:
    return y, nfe


# The solver's keyword defaults below are :data:`OPTIONS`' (score_sde's RK45 tolerances);
# tests/samplers/test_ode.py checks every function here states the same ones.

def encode(eps_fn, process, x, *, ode_solver: str = "tsit5", rtol: float = 1e-5,
           atol: float = 1e-5) -> Tuple[jax.Array, int]:
  """x at level 0 [B, ...] -> its latent x_T at the top level, and the nfe."""
  scale, _ = sigma_table(process)
  y, nfe = integrate(eps_fn, process, jnp.asarray(x) / scale[0], True, ode_solver=ode_solver,
                     rtol=rtol, atol=atol)
  return y * scale[-1], nfe


def decode(eps_fn, process, x_T, *, ode_solver: str = "tsit5", rtol: float = 1e-5,
           atol: float = 1e-5) -> Tuple[jax.Array, int]:
  """x_T at the top level [B, ...] -> x at level 0, and the nfe."""
  scale, _ = sigma_table(process)
  y, nfe = integrate(eps_fn, process, jnp.asarray(x_T) / scale[-1], False,
                     ode_solver=ode_solver, rtol=rtol, atol=atol)
  return y * scale[0], nfe


def sample_with_nfe(eps_fn, process, shape, key, x_T=None, *, ode_solver: str = "tsit5",
                    rtol: float = 1e-5, atol: float = 1e-5, denoise: bool = False):
  """Samples [shape] float32 and the nfe (ODE-field evaluations) the solver used."""
  x_T = (jnp.asarray(x_T, jnp.float32) if x_T is not None
         else process.prior_sample(key, tuple(shape)).astype(jnp.float32))
  x, nfe = decode(eps_fn, process, x_T, ode_solver=ode_solver, rtol=rtol, atol=atol)
  if denoise:
    scale, sig = sigma_table(process)
    x_hat = x / scale[0]
    x, nfe = x_hat - sig[0] * eps_at(eps_fn, x, 0), nfe + 1
  return x, nfe


def sample(eps_fn, process, shape, key, x_T=None, x0_range=(-1.0, 1.0), *,
           ode_solver: str = "tsit5", rtol: float = 1e-5, atol: float = 1e-5,
           denoise: bool = False):
  """Probability-flow ODE samples [shape] float32 (the registry's entry point), from
  ``x_T`` or the process prior."""
  del x0_range
  return sample_with_nfe(eps_fn, process, shape, key, x_T, ode_solver=ode_solver, rtol=rtol,
                         atol=atol, denoise=denoise)[0]


OPTIONS = declare(
    sample, denoise=DENOISE,
    ode_solver=Option("adaptive solver: tsit5 or dopri5", choices=SOLVERS),
    rtol=Option("relative tolerance (score_sde RK45: 1e-5)", rule=POSITIVE),
    atol=Option("absolute tolerance (score_sde RK45: 1e-5)", rule=POSITIVE))


# ---------------------------------------------------------------------------
# log-likelihood: the instantaneous change of variables (Chen et al. 2018;
# Song et al. 2021 eq. 39) with the Hutchinson–Skilling trace estimator
# ---------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("spec", "solver", "rtol", "atol"))
def _solve_logp(dynamic, tables, x_hat, probe, *, spec, solver, rtol, atol):
  f = ode_field(spec.rebuild(dynamic), *tables)
  b = x_hat.shape[0]

  def aug(tau, state, args):                                         # d(x̂, ∫div)/dτ
    y, _ = state
    dy, jv = jax.jvp(lambda v: f(tau, v, None), (y,), (probe,))
    div = jnp.sum((probe * jv).reshape(b, -1), axis=1)               # vᵀ (∂f/∂x̂) v
    return dy, div

  t0, t1 = tables[1][0], tables[1][-1]
  sol = diffrax.diffeqsolve(
      diffrax.ODETerm(aug), _solver(solver), t0, t1, None, (x_hat, jnp.zeros((b,))),
      stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
      saveat=diffrax.SaveAt(t1=True), max_steps=MAX_STEPS)
  y, div = sol.ys
  return y[0], div[0], STAGES_PER_STEP * sol.stats["num_steps"] + 1


def log_likelihood(eps_fn, process, x, key, probe: str = "rademacher", *,
                   ode_solver: str = "tsit5", rtol: float = 1e-5, atol: float = 1e-5):
  """log p(x) in nats for x at level 0 (model space), one Hutchinson probe per example.

  log p_0(x) = log p_T(x_T) + ∫_{τ_min}^{τ_max} div f dτ − D log s_0, where x̂ is
  carried up the ODE, p_T is the process prior seen in x̂ (VP N(0, 1/s_{T−1}² I),
  VE N(0, σ_max² I)) and div f ≈ vᵀ ∂f/∂x̂ v with v Rademacher or N(0, I), fixed
  along the path (score_sde's ``likelihood.py``).
  Args: x [B, ...]; key: the probe draw. Returns (log p [B] float32, nfe int).
  """
  x = jnp.asarray(x, jnp.float32)
  scale, sig = sigma_table(process)
  if probe == "rademacher":
    v = jax.random.rademacher(key, x.shape, jnp.float32)
  else:
    v = jax.random.normal(key, x.shape, jnp.float32)
  spec, dynamic = split_fn(eps_fn)
  y, div, nfe = _solve_logp(dynamic, _tables(process), x / scale[0], v, spec=spec,
                            solver=ode_solver, rtol=float(rtol), atol=float(atol))
  d = int(np.prod(x.shape[1:]))
  _, prior_std = process.host_marginal()
  prior_var = (1.0 / scale[-1]) ** 2 if process.kind == "vp" else prior_std[-1] ** 2
  flat = y.reshape(y.shape[0], -1)
  log_prior = -0.5 * (jnp.sum(flat ** 2, axis=1) / prior_var + d * np.log(2 * np.pi * prior_var))
  return log_prior + div - d * np.log(scale[0]), int(nfe)

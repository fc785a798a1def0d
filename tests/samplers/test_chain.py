"""diffusion/samplers/chain.py: the scan every plan runs: trajectories, x_T, parameters as
jit arguments, and the chain in segments with progress (same samples, one compilation)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffusion

from tests.samplers.test_ancestral import _cfg, D, gaussian_eps_fn


# ---- trajectories, x_T, parameters as jit arguments -----------------------------------------


def test_trajectory_and_init_options(vp):
  small = diffusion.make_process(dict(variant="ddpm", num_timesteps=20))
  init = jax.random.normal(jax.random.PRNGKey(12), (8, D))
  cfg = _cfg(var_type="fixedsmall")
  x, traj = diffusion.sample(gaussian_eps_fn(small), small, (8, D), jax.random.PRNGKey(13),
                            cfg, init=init, x0_range=None, trajectory_every=5)
  assert traj.shape == (5, 8, D)  # x_T and the state after 5, 10, 15, 20 steps
  np.testing.assert_array_equal(np.asarray(traj[0]), np.asarray(init))
  np.testing.assert_array_equal(np.asarray(traj[-1]), np.asarray(x))
  x2 = diffusion.sample(gaussian_eps_fn(small), small, (8, D), jax.random.PRNGKey(13), cfg,
                       init=init, x0_range=None)
  np.testing.assert_allclose(np.asarray(x2), np.asarray(x), atol=1e-6)
  # N not divisible by k: the remainder still runs; 20 // 6 + 1 = 4 states.
  x3, traj3 = diffusion.sample(gaussian_eps_fn(small), small, (8, D), jax.random.PRNGKey(13),
                              cfg, init=init, x0_range=None, trajectory_every=6)
  assert traj3.shape == (4, 8, D)
  np.testing.assert_allclose(np.asarray(x3), np.asarray(x), atol=1e-6)
  # init='uniform' draws x_T ~ U[0, 1] (NCSN's choice).
  _, tu = diffusion.sample(gaussian_eps_fn(small), small, (8, D), jax.random.PRNGKey(14),
                          _cfg(init="uniform"), trajectory_every=20)
  assert float(tu[0].min()) >= 0.0 and float(tu[0].max()) <= 1.0
  # Clipping keeps x̂₀ in x0_range, so samples end inside it.
  xc = diffusion.sample(lambda x, t: jnp.zeros_like(x) - 3.0, small, (8, D),
                       jax.random.PRNGKey(15), _cfg(clip_x0=True))
  assert float(jnp.abs(xc).max()) <= 1.0 + 1e-5


def test_partial_eps_fn_matches_closure(vp):
  """Parameters passed through jax.tree_util.Partial are jit arguments, same result."""
  small = diffusion.make_process(dict(variant="ddpm", num_timesteps=20))
  w = jax.random.normal(jax.random.PRNGKey(16), (D, D)) * 0.1

  def linear_eps(w, x, t):
    return x @ w + 0.01 * t[:, None].astype(jnp.float32)

  cfg = dict(method="ddim", num_steps=10, eta=0.5)
  key = jax.random.PRNGKey(17)
  a = diffusion.sample(jax.tree_util.Partial(linear_eps, w), small, (4, D), key, cfg)
  b = diffusion.sample(lambda x, t: linear_eps(w, x, t), small, (4, D), key, cfg)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


# ---- the chain in segments, with progress ---------------------------------------------------


def test_grid_chain_reports_progress_with_the_same_samples():
  """The chain in segments (a report about every 5%) draws exactly what one compiled
  chain draws; the reports count finished steps up to the chain's length."""
  import jax
  from diffusion import families, samplers
  from diffusion.families import builders
  from diffusion.samplers import chain
  from tests.train.test_loop import toy_config
  family = families.make_family(toy_config(**{"model.name": "analytic"}))
  plan = samplers.make_plan(family.process, **builders.sampler_options(family.config.sampling))
  key = jax.random.PRNGKey(3)
  whole = samplers.run_plan(plan, family.eps_fn({}), (128, 2), key, x0_range=None)
  reports = []
  parts = samplers.run_plan(plan, family.eps_fn({}), (128, 2), key, x0_range=None,
                            on_progress=lambda done, total: reports.append((done, total)))
  np.testing.assert_array_equal(np.asarray(whole), np.asarray(parts))
  assert [d for d, _ in reports] == list(range(5, 101, 5)) and {n for _, n in reports} == {100}
  for n in (1, 7, 50, 100, 1000, 1160, 997):
    pieces = chain.segments(n)
    assert pieces[0][0] == 0 and pieces[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))
    assert len({b - a for a, b in pieces}) <= 2 and len(pieces) <= 30
  assert len({b - a for a, b in chain.segments(1000)}) == 1   # one compiled segment
  with pytest.raises(ValueError, match="trajectory_every=0"):
    samplers.run_plan(plan, family.eps_fn({}), (4, 2), key, trajectory_every=10,
                      on_progress=print)


def test_grid_chain_in_segments_compiles_once_for_every_grid():
  """The training loop's sampler with progress: new parameters at every grid reuse the
  compiled segment (the parameters are arguments, not constants of a new closure)."""
  import jax
  from diffusion import families
  from diffusion.samplers import chain
  from tests.train.test_loop import toy_config
  family = families.make_family(toy_config())
  sample_fn = family.sample_fn(16, on_progress=lambda done, total: None)
  params = family.init_params(jax.random.PRNGKey(0))
  first = np.asarray(sample_fn(params, jax.random.PRNGKey(1)))
  compiled = chain._run_segment._cache_size()  # pylint: disable=protected-access
  moved = jax.tree.map(lambda p: p + 0.01, params)
  second = np.asarray(sample_fn(moved, jax.random.PRNGKey(1)))
  assert chain._run_segment._cache_size() == compiled  # pylint: disable=protected-access
  assert not np.array_equal(first, second)   # the new parameters were used
  np.testing.assert_array_equal(first, np.asarray(family.sample_fn(16)(params,
                                                                      jax.random.PRNGKey(1))))

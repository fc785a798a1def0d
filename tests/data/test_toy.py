"""diffusion/data/toy.py: the toy distributions' moments by Monte Carlo (5 SE), determinism
and the stream."""

import jax
import numpy as np
from scipy import integrate

from diffusion import data
from diffusion.data import toy

from tests.data.test_sources import make_cfg


N_TOY = 200_000


def _draw(name, **cfg):
  src = data.make_source(make_cfg(dataset=name, **cfg))
  x = np.asarray(jax.jit(src.get_batch, static_argnums=2)({}, jax.random.key(11), N_TOY),
                 np.float64)
  assert x.shape == (N_TOY, src.shape[0]) and src.arrays == {}
  return src, x


def _assert_mean(samples, expected):
  """Sample mean within 5 SE (SE = sample std / sqrt(n)) of the expectation."""
  se = samples.std(ddof=1) / np.sqrt(samples.size)
  assert abs(samples.mean() - expected) < 5 * se, (samples.mean(), expected, se)


def test_swiss_roll_moments():
  _, x = _draw("swiss_roll")
  a, b = 1.5 * np.pi, 4.5 * np.pi
  s, sd = toy.SWISS_ROLL_SCALE, toy.SWISS_ROLL_NOISE

  def moment(f):   # E_t[f(t)] for t ~ U[a, b], by quadrature
    return integrate.quad(f, a, b, limit=200)[0] / (b - a)

  _assert_mean(x[:, 0], s * moment(lambda t: t * np.cos(t)))
  _assert_mean(x[:, 1], s * moment(lambda t: t * np.sin(t)))
  _assert_mean(x[:, 0] ** 2, s**2 * (moment(lambda t: (t * np.cos(t)) ** 2) + sd**2))
  _assert_mean(x[:, 1] ** 2, s**2 * (moment(lambda t: (t * np.sin(t)) ** 2) + sd**2))
  radius = np.hypot(x[:, 0], x[:, 1]) / s
  assert np.mean((radius > a - 3) & (radius < b + 3)) > 0.99


def test_mixture_weights_and_moments():
  # NCSN default: 0.8 N((5,5), I) + 0.2 N((-5,-5), I). Modes are 7 sigma from the
  # boundary x+y=0, so the side of the boundary tells the component.
  _, x = _draw("mixture")
  upper = x.sum(1) > 0
  _assert_mean(upper.astype(float), 0.8)                   # SE = sqrt(.8·.2/n) ≈ 9e-4
  for sel, mu in ((upper, 5.0), (~upper, -5.0)):
    for d in range(2):
      _assert_mean(x[sel, d], mu)
      _assert_mean((x[sel, d] - mu) ** 2, 1.0)
  # A 3-component mixture with unequal stds in 2-D.
  w, mu, sd = (0.5, 0.3, 0.2), ((0.0, 0.0), (20.0, 0.0), (0.0, 20.0)), (1.0, 2.0, 0.5)
  _, x = _draw("mixture", mixture_weights=w, mixture_means=mu, mixture_stds=sd)
  comp = np.argmin(((x[:, None] - np.asarray(mu)[None]) ** 2).sum(-1), axis=1)
  for k in range(3):
    _assert_mean((comp == k).astype(float), w[k])
    _assert_mean((x[comp == k] - mu[k]) ** 2, sd[k] ** 2)


def test_eight_gaussians():
  _, x = _draw("eight_gaussians")
  ang = np.arange(8) * np.pi / 4
  centers = toy.EIGHT_GAUSSIANS_RADIUS * np.stack([np.cos(ang), np.sin(ang)], -1)
  comp = np.argmin(((x[:, None] - centers[None]) ** 2).sum(-1), axis=1)
  for k in range(8):
    _assert_mean((comp == k).astype(float), 1 / 8)
    _assert_mean((x[comp == k] - centers[k]) ** 2, toy.EIGHT_GAUSSIANS_STD ** 2)


def test_checkerboard():
  _, x = _draw("checkerboard")
  assert x.min() >= -4 and x.max() < 4
  cell = np.floor(x / 2).astype(int)                        # square indices in -2..1
  assert np.all((cell.sum(1) % 2) == 0)                     # only black squares
  sq = (cell[:, 0] + 2) * 4 + (cell[:, 1] + 2)
  counts = np.bincount(sq, minlength=16)
  assert np.count_nonzero(counts) == 8
  for c in counts[counts > 0]:                              # 1/8 each, SE sqrt(p(1-p)/n)
    assert abs(c / N_TOY - 1 / 8) < 5 * np.sqrt(1 / 8 * 7 / 8 / N_TOY)
  _assert_mean(np.mod(x, 2).ravel(), 1.0)                   # uniform inside a square


def test_toy_determinism_and_stream():
  src = data.make_source(make_cfg(dataset="checkerboard"))
  key = jax.random.fold_in(jax.random.key(5), 9)
  np.testing.assert_array_equal(src.get_batch({}, key, 16), src.get_batch({}, key, 16))
  it = src.iterator(16, seed=5)
  full = [next(it) for _ in range(4)]
  np.testing.assert_array_equal(full[3], next(src.iterator(16, seed=5, start_step=3)))
  np.testing.assert_array_equal(next(src.iterator(16, 5, 1, process_index=1, process_count=2)),
                                full[1][8:])
  assert src.x_range is None and not src.is_image

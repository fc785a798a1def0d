"""diffusion/models/refinenet.py: the NCSN / NCSNv2 RefineNets against the official code
(sizes, layers, outputs on the released checkpoints' weights, ε through the glue).

The fixtures (tests/fixtures/ncsn/, written once by tests/fixtures/make_ncsn_fixture.py
with the official model classes and torch) are tiny checkpoints in the released layout
with the official float64 outputs on fixed inputs; these tests read them without torch."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusion import make_eps_fn
from diffusion.core.processes import VEProcess
from diffusion.errors import ConfigError
from diffusion.models import refinenet, refinenet_layers
from diffusion.paths import REPO
from diffusion.pretrained import ncsn_torch

FIXTURES = pathlib.Path(REPO) / "tests" / "fixtures" / "ncsn"
RTOL = 1e-5


def rel_err(ours, ref) -> float:
  """max |ours − ref| / max |ref| (float64)."""
  ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
  return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


def load(released, name, raw=False):
  params, sigmas, meta = ncsn_torch.import_ncsn_checkpoint(released[name], raw=raw)
  module = refinenet.make_refinenet(meta["architecture"], meta["ngf"], meta["channels"],
                                    meta["num_classes"] or 1)
  return module, params, sigmas, meta


# ---------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("module, image_size, expected", [
    (refinenet.ncsn(64, 10, 1), 28, 7_638_657),        # NCSN MNIST (ncsn configs/anneal.yml)
    (refinenet.ncsn(128, 10, 3), 32, 30_117_635),      # NCSN CIFAR-10 / CelebA
    (refinenet.ncsnv2(128), 32, 29_694_083),           # NCSNv2 CIFAR-10 (L 232), CelebA (L 500)
    (refinenet.ncsnv2_deeper(128), 32, 83_445_379),    # NCSNv2Deeper: LSUN church, bedroom
    (refinenet.ncsnv2_deepest(128), 32, 94_132_611),   # NCSNv2Deepest: FFHQ
], ids=["ncsn_mnist", "ncsn_cifar10", "ncsnv2_cifar10", "ncsnv2_deeper", "ncsnv2_deepest"])
def test_parameter_counts_match_official_code(module, image_size, expected):
  assert refinenet.param_count(module, image_size) == expected


def test_ncsnv2_count_does_not_depend_on_levels():
  # Unconditional: CIFAR-10's 232 levels and CelebA's 500 give the same network.
  assert refinenet.make_refinenet("ncsnv2", num_classes=232) == refinenet.make_refinenet(
      "ncsnv2", num_classes=500)


def test_shapes_and_divisibility():
  net = refinenet.ncsnv2_deeper(4)
  x = jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32)
  cond = jax.ShapeDtypeStruct((2,), jnp.float32)
  params = jax.eval_shape(net.init, jax.random.PRNGKey(0), x, cond)
  out = jax.eval_shape(net.apply, params, x, cond)
  assert out.shape == (2, 16, 16, 3) and out.dtype == jnp.float32
  with pytest.raises(ValueError, match="divisible by 4"):
    jax.eval_shape(net.apply, params, jax.ShapeDtypeStruct((1, 18, 18, 3), jnp.float32),
                   jax.ShapeDtypeStruct((1,), jnp.float32))


# ---------------------------------------------------------------------------
# Layers against independent formulas
# ---------------------------------------------------------------------------


def test_resize_align_corners_matches_formula():
  x = np.random.default_rng(0).normal(size=(1, 3, 4, 2)).astype(np.float32)
  out = np.asarray(refinenet_layers.resize_bilinear_align_corners(jnp.asarray(x), (5, 7)))
  # Reference: separable linear interpolation at i*(n_in-1)/(n_out-1), corners aligned.
  def interp_axis(a, axis, n_out):
    n_in = a.shape[axis]
    pos = np.arange(n_out) * (n_in - 1) / (n_out - 1)
    return np.stack([np.apply_along_axis(lambda v: np.interp(p, np.arange(n_in), v), axis, a)
                     for p in pos], axis=axis)
  ref = interp_axis(interp_axis(x.astype(np.float64), 1, 5), 2, 7)
  np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(out[:, [0, -1]][:, :, [0, -1]], x[:, [0, -1]][:, :, [0, -1]])
  # jax.image.resize samples half-pixel centres: a different operation.
  assert not np.allclose(np.asarray(jax.image.resize(x, (1, 5, 7, 2), "bilinear")), ref,
                         atol=1e-3)


def test_instance_norm_plus_uses_unbiased_channel_variance():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 5, 5, 3)), jnp.float32)
  normed, means = refinenet_layers._instance_norm_plus_core(x)  # pylint: disable=protected-access
  mu = np.asarray(x, np.float64).mean(axis=(1, 2))
  ref = (mu - mu.mean(-1, keepdims=True)) / np.sqrt(mu.var(-1, ddof=1, keepdims=True) + 1e-5)
  np.testing.assert_allclose(np.asarray(means)[:, 0, 0], ref, rtol=1e-5)
  xv = np.asarray(x, np.float64)
  ref_in = (xv - xv.mean((1, 2), keepdims=True)) / np.sqrt(xv.var((1, 2), keepdims=True) + 1e-5)
  np.testing.assert_allclose(np.asarray(normed), ref_in, rtol=1e-5, atol=1e-6)


def test_pooling_conventions():
  x = jnp.ones((1, 5, 5, 1))
  avg = np.asarray(refinenet_layers.pool_5x5(x, "avg"))[0, :, :, 0]
  assert avg[2, 2] == pytest.approx(1.0) and avg[0, 0] == pytest.approx(9 / 25)  # pad counted
  mx = np.asarray(refinenet_layers.pool_5x5(-x, "max"))[0, :, :, 0]
  np.testing.assert_array_equal(mx, -1.0)                                # pad never wins


@pytest.mark.parametrize("num_classes", [0, 3])
def test_refine_block_is_differentiable(num_classes):
  """Training needs reverse-mode through pooling, fusion and the norms (a small block
  stands for the network: same layers, a fraction of the compile time)."""
  block = refinenet_layers.RefineBlock(4, num_classes=num_classes)
  xs = [jnp.ones((1, 4, 4, 4)) * jnp.arange(4.0), jnp.ones((1, 2, 2, 4)) * jnp.arange(4.0)[::-1]]
  y = jnp.array([1])
  params = block.init(jax.random.PRNGKey(0), xs, y)
  grads = jax.grad(lambda p, xs: jnp.sum(block.apply(p, xs, y) ** 2), argnums=(0, 1))(params, xs)
  leaves = jax.tree_util.tree_leaves(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  assert all(bool(jnp.any(g != 0)) for g in jax.tree_util.tree_leaves(grads[1]))


# ---------------------------------------------------------------------------
# Agreement with the official networks through the importer
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name, size", [("ncsn_cifar", 16), ("ncsn_cifar", 12),
                                        ("ncsn_mnist", 28)])
def test_ncsn_matches_official(released, name, size):
  module, params, sigmas, meta = load(released, name)
  assert sigmas is None and meta["architecture"] == "ncsn" and meta["weights"] == "raw"
  assert not meta["has_ema"] and meta["epoch"] is None
  ref = np.load(FIXTURES / f"{name}.npz")
  x, y, want = ref[f"x_{size}"], ref[f"y_{size}"], ref[f"out_{size}"]
  L = meta["num_classes"]
  t = (L - 1 - y).astype(np.float32)     # official index 0 = largest σ = our t = L − 1
  apply = jax.jit(module.apply)
  out = apply({"params": params}, 2.0 * jnp.asarray(x) - 1.0, jnp.asarray(t))
  assert rel_err(out, want) < RTOL
  # The level index matters: the reversed order gives another answer.
  wrong = apply({"params": params}, 2.0 * jnp.asarray(x) - 1.0, jnp.asarray(y, jnp.float32))
  assert rel_err(wrong, want) > 1e-2
  # A level outside the table is NaN, never a silently clamped level.
  outside = apply({"params": params}, 2.0 * jnp.asarray(x) - 1.0, jnp.asarray([L, -1.0]))
  assert np.all(np.isnan(outside))


@pytest.mark.parametrize("name, architecture", [("ncsnv2", "ncsnv2"),
                                                ("ncsnv2_deeper", "ncsnv2_deeper"),
                                                ("ncsnv2_deepest", "ncsnv2_deepest")])
def test_ncsnv2_matches_official(released, name, architecture):
  ref = np.load(FIXTURES / f"{name}.npz")
  x, y = ref["x"], ref["y"]
  apply = None
  for raw, key in ((False, "out"), (True, "out_raw")):
    module, params, sigmas, meta = load(released, name, raw=raw)
    apply = apply or jax.jit(module.apply)   # same network both times: one compilation
    assert meta["architecture"] == architecture
    assert meta["weights"] == ("raw" if raw else "ema") and meta["has_ema"]
    assert (meta["epoch"], meta["step"]) == (7, 1234)
    np.testing.assert_array_equal(sigmas, ref["sigmas"][::-1])     # stored ladder, ascending
    assert meta["num_classes"] == len(sigmas)
    h = apply({"params": params}, 2.0 * jnp.asarray(x) - 1.0, jnp.zeros(len(x)))
    # The official forward returns h / σ_y with its float32 buffer.
    s = np.asarray(h, np.float64) / ref["sigmas"][y][:, None, None, None]
    assert rel_err(s, ref[key]) < RTOL, key
  assert rel_err(ref["out"], ref["out_raw"]) > 1e-3    # the EMA really differs


def test_eps_through_the_glue(released):
  """diffusion's eps_fn(x_t, t) is −σ_t · s of the official network at the same level,
  with the glue's 2x − 1 (model.rescale_inputs) applied once."""
  # NCSN: raw score output; any ascending ladder with the checkpoint's L levels.
  module, params, _, meta = load(released, "ncsn_cifar")
  ref = np.load(FIXTURES / "ncsn_cifar.npz")
  x, y, s = ref["x_16"], ref["y_16"], ref["out_16"]
  L = meta["num_classes"]
  ladder = np.geomspace(0.01, 1.0, L)
  eps_fn = make_eps_fn(module, params, VEProcess.from_sigmas(ladder),
                       {"rescale_inputs": True})
  t = L - 1 - y
  want = -ladder[t][:, None, None, None] * s
  assert rel_err(jax.jit(eps_fn)(jnp.asarray(x), jnp.asarray(t, jnp.int32)), want) < RTOL
  with pytest.raises(ConfigError, match="outputs the score itself"):
    make_eps_fn(module, params, VEProcess.from_sigmas(ladder),
                {"rescale_inputs": True, "scale_by_sigma": True})

  # NCSNv2: output h, read with scale_by_sigma; the ladder comes from the checkpoint.
  module, params, sigmas, _ = load(released, "ncsnv2")
  ref = np.load(FIXTURES / "ncsnv2.npz")
  x, y, s = ref["x"], ref["y"], ref["out"]
  eps_fn = make_eps_fn(module, params, VEProcess.from_sigmas(sigmas),
                       {"rescale_inputs": True, "scale_by_sigma": True})
  t = len(sigmas) - 1 - y
  want = -ref["sigmas"][y][:, None, None, None] * s
  assert rel_err(jax.jit(eps_fn)(jnp.asarray(x), jnp.asarray(t, jnp.int32)), want) < RTOL

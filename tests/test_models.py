"""Tests of diffusion.models: U-Net size and behaviour, MLP, analytic mixture.

Parameter counts use jax.eval_shape (nothing allocated). Forward tests use a
small U-Net (ch 32, two levels, attention at 8x8, 16x16x3 inputs), compiled once
per mode in module-scoped fixtures.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from configs.base import get_config
from diffusion.errors import ConfigError
from diffusion import make_model
from diffusion.models import MLP, AnalyticMixture, UNet, timestep_embedding


def _model_cfg(**changes):
  cfg = get_config("ddpm").model
  for k, v in changes.items():
    cfg[k] = v
  return cfg


def _num_params(module, x_shape, cond=True):
  def init():
    c = jnp.zeros(x_shape[:1]) if cond else None
    return module.init(jax.random.key(0), jnp.zeros(x_shape), c)
  shapes = jax.eval_shape(init)
  return sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(shapes))


def _perturb(params, key, scale=0.05):
  """Adds N(0, scale^2) noise to every parameter (zero init would give output 0)."""
  leaves, treedef = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree_util.tree_unflatten(
      treedef, [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


# ---- U-Net size (docs/checkable_values.md items 12-13) -------------------------------

@pytest.mark.parametrize("changes, image_size, expected", [
    (dict(), 32, 35_746_307),                                    # DDPM CIFAR-10
    (dict(out_channels=6), 32, 35_749_766),                      # learned variance
    (dict(ch_mult=(1, 1, 2, 2, 4, 4), dropout=0.0), 256, 113_673_219),  # CelebA-HQ/LSUN
])
def test_unet_parameter_count_matches_ddpm(changes, image_size, expected):
  module = make_model(_model_cfg(**changes))
  assert isinstance(module, UNet)
  assert _num_params(module, (1, image_size, image_size, 3)) == expected


def test_unconditional_unet_has_no_embedding():
  module = make_model(_model_cfg(conditional=False, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                                 attn_resolutions=(8,)))
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3))))
  names = jax.tree_util.keystr(shapes)
  assert "temb" not in names
  out = jax.eval_shape(module.apply, shapes, jnp.zeros((2, 16, 16, 3)))
  assert out.shape == (2, 16, 16, 3)


def test_unet_without_resampling_convs_and_learned_variance_shapes():
  module = make_model(_model_cfg(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1,
                                 attn_resolutions=(), resamp_with_conv=False, out_channels=6))
  x, c = jnp.zeros((2, 16, 16, 3)), jnp.zeros((2,))
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), x, c))
  assert "downsample" not in jax.tree_util.keystr(shapes)
  out = jax.eval_shape(module.apply, shapes, x, c)
  assert out.shape == (2, 16, 16, 6) and out.dtype == jnp.float32


# ---- timestep embedding (docs/checkable_values.md item 11) --------------------------------------------

def test_timestep_embedding_matches_ddpm_values():
  emb = np.asarray(timestep_embedding(jnp.array([1.0, 0.0]), 128))
  assert emb.shape == (2, 128)
  np.testing.assert_allclose(emb[0, 0], math.sin(1.0), rtol=1e-6)
  np.testing.assert_allclose(emb[0, 1], 0.7604387, rtol=1e-6)
  np.testing.assert_allclose(emb[0, 64], math.cos(1.0), rtol=1e-6)
  # Lowest frequency 1e-4: at cond = 1 the last sin entry is sin(1e-4).
  np.testing.assert_allclose(emb[0, 63], math.sin(1e-4), rtol=1e-5)
  np.testing.assert_array_equal(emb[1], np.r_[np.zeros(64), np.ones(64)])
  freqs = np.exp(-np.log(1e4) * np.arange(64) / 63)
  t = 537.0
  ref = np.r_[np.sin(t * freqs), np.cos(t * freqs)]
  np.testing.assert_allclose(timestep_embedding(jnp.array([t]), 128)[0], ref, atol=2e-4)


# ---- small U-Net forward ----------------------------------------------------------------

SMALL = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), dropout=0.1)


@pytest.fixture(scope="module")
def small_unet():
  """float32 and bfloat16 small U-Nets, their init and perturbed params, inputs."""
  f32 = make_model(_model_cfg(**SMALL))
  bf16 = make_model(_model_cfg(dtype="bfloat16", **SMALL))
  assert bf16.dtype == jnp.bfloat16
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
  cond = jnp.array([3.0, 917.0])
  params = jax.jit(f32.init)(jax.random.key(0), x, cond)["params"]
  return dict(
      f32=jax.jit(f32.apply, static_argnames="train"),
      bf16=jax.jit(bf16.apply, static_argnames="train"),
      params=params, noisy=_perturb(params, jax.random.key(2)), x=x, cond=cond)


def test_unet_params_are_float32_and_zero_init_output_is_zero(small_unet):
  s = small_unet
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(s["params"]))
  assert not np.any(s["params"]["conv_out"]["kernel"])
  out = s["f32"]({"params": s["params"]}, s["x"], s["cond"])
  assert out.shape == s["x"].shape and out.dtype == jnp.float32
  assert np.all(np.asarray(out) == 0.0)


def test_unet_bfloat16_close_to_float32(small_unet):
  s = small_unet
  ref = np.asarray(s["f32"]({"params": s["noisy"]}, s["x"], s["cond"]))
  out = s["bf16"]({"params": s["noisy"]}, s["x"], s["cond"])
  assert out.dtype == jnp.float32
  assert np.linalg.norm(ref) > 0
  rel = np.linalg.norm(np.asarray(out) - ref) / np.linalg.norm(ref)
  assert rel < 2e-2, rel


def test_unet_conditioning_changes_output(small_unet):
  s = small_unet
  v = {"params": s["noisy"]}
  out_a = np.asarray(s["f32"](v, s["x"], s["cond"]))
  out_b = np.asarray(s["f32"](v, s["x"], s["cond"] + 50.0))
  assert np.abs(out_a - out_b).max() > 1e-3 * np.abs(out_a).max()
  np.testing.assert_array_equal(out_a, np.asarray(s["f32"](v, s["x"], s["cond"])))


def test_unet_dropout_only_in_training(small_unet):
  s = small_unet
  v = {"params": s["noisy"]}
  k1, k2 = jax.random.key(10), jax.random.key(11)
  eval_1 = np.asarray(s["f32"](v, s["x"], s["cond"], train=False, rngs={"dropout": k1}))
  eval_2 = np.asarray(s["f32"](v, s["x"], s["cond"], train=False, rngs={"dropout": k2}))
  np.testing.assert_array_equal(eval_1, eval_2)
  train_1 = np.asarray(s["f32"](v, s["x"], s["cond"], train=True, rngs={"dropout": k1}))
  train_1b = np.asarray(s["f32"](v, s["x"], s["cond"], train=True, rngs={"dropout": k1}))
  train_2 = np.asarray(s["f32"](v, s["x"], s["cond"], train=True, rngs={"dropout": k2}))
  np.testing.assert_array_equal(train_1, train_1b)      # same rng, same output
  assert np.abs(train_1 - train_2).max() > 1e-4
  assert np.abs(train_1 - eval_1).max() > 1e-4


# ---- config errors -----------------------------------------------------------------------

@pytest.mark.parametrize("changes, field", [
    (dict(name="resnet"), "model.name"),
    (dict(ch_mult=()), "model.ch_mult"),
    (dict(ch_mult=(1, 0)), "model.ch_mult"),
    (dict(ch=48), "model.ch"),
    (dict(dtype="float16"), "model.dtype"),
    (dict(out_channels=0), "model.out_channels"),
    (dict(num_res_blocks=0), "model.num_res_blocks"),
    (dict(dropout=1.0), "model.dropout"),
    (dict(attn_resolutions=(16, -1)), "model.attn_resolutions"),
    (dict(name="mlp", hidden_dims=()), "model.hidden_dims"),
    (dict(name="analytic"), "model.name"),          # no data_cfg given
])
def test_make_model_rejects_bad_fields(changes, field):
  with pytest.raises(ConfigError) as e:
    make_model(_model_cfg(**changes))
  msg = str(e.value)
  assert field in msg and "\n" not in msg


def test_make_model_checks_against_data_config():
  data = get_config("ddpm").data
  data.image_size = 20                                   # not divisible by 2**3
  with pytest.raises(ConfigError, match="data.image_size"):
    make_model(_model_cfg(), data_cfg=data)
  data.image_size = 32
  with pytest.raises(ConfigError, match="model.out_channels"):
    make_model(_model_cfg(out_channels=4), data_cfg=data)
  data.mixture_stds = (1.0, -1.0)
  with pytest.raises(ConfigError, match="data.mixture_stds"):
    make_model(_model_cfg(name="analytic"), data_cfg=data)


# ---- MLP ---------------------------------------------------------------------------------

def test_mlp_shapes_and_conditioning():
  module = make_model(_model_cfg(name="mlp", hidden_dims=(32, 32), out_channels=2))
  assert isinstance(module, MLP)
  x = jax.random.normal(jax.random.key(0), (5, 2))
  cond = jnp.arange(5.0)
  params = module.init(jax.random.key(1), x, cond)["params"]
  apply = jax.jit(module.apply)
  out = apply({"params": params}, x, cond)
  assert out.shape == (5, 2) and out.dtype == jnp.float32
  assert np.all(np.asarray(out) == 0.0)                  # zero-initialised output layer
  noisy = {"params": _perturb(params, jax.random.key(2), scale=0.3)}
  out_a = np.asarray(apply(noisy, x, cond))
  out_b = np.asarray(apply(noisy, x, cond + 7.0))
  assert np.abs(out_a - out_b).max() > 1e-3
  # Unconditional: no embedding parameters, cond ignored.
  uncond = make_model(_model_cfg(name="mlp", hidden_dims=(16,), out_channels=4,
                                 conditional=False))
  p = uncond.init(jax.random.key(3), x)
  assert "temb" not in jax.tree_util.keystr(p)
  assert uncond.apply(p, x).shape == (5, 4)


# ---- analytic mixture --------------------------------------------------------------------

WEIGHTS = (0.3, 0.7)
MEANS = ((1.0, -2.0, 0.5), (-1.5, 1.0, 2.0))
COVS = (((1.0, 0.6, -0.2), (0.6, 0.8, 0.1), (-0.2, 0.1, 0.5)),
        ((0.4, -0.3, 0.0), (-0.3, 1.5, 0.4), (0.0, 0.4, 0.9)))


def _np_log_p(x, a, s):
  """float64 log density of sum_k w_k N(a mu_k, a^2 Sigma_k + s^2 I) at one point x [D]."""
  terms = []
  for w, m, c in zip(WEIGHTS, MEANS, COVS):
    cov = a * a * np.asarray(c) + s * s * np.eye(3)
    terms.append(np.log(w) + stats.multivariate_normal(a * np.asarray(m), cov).logpdf(x))
  return logsumexp(terms)


def _np_grad(x, a, s, h=1e-5):
  """Central finite-difference gradient of _np_log_p (float64)."""
  grad = np.zeros_like(x)
  for i in range(x.size):
    e = np.zeros_like(x)
    e[i] = h
    grad[i] = (_np_log_p(x + e, a, s) - _np_log_p(x - e, a, s)) / (2 * h)
  return grad


@pytest.mark.parametrize("a, s", [
    (math.sqrt(0.6), math.sqrt(0.4)),      # VP: a = sqrt(alpha_bar), s = sqrt(1 - alpha_bar)
    (math.sqrt(0.999), math.sqrt(0.001)),  # VP near the data
    (1.0, 0.3),                            # VE: a = 1, s = sigma
    (1.0, 5.0),
])
def test_analytic_eps_is_minus_sigma_times_score(a, s):
  module = AnalyticMixture(WEIGHTS, MEANS, COVS)
  x = np.array([[0.0, 0.0, 0.0], [1.2, -1.8, 0.4], [-1.0, 0.5, 2.5], [3.0, 3.0, -3.0]])
  b = len(x)
  eps = np.asarray(module.apply({}, jnp.asarray(x, jnp.float32), jnp.full((b,), a),
                                jnp.full((b,), s)))
  logp = np.asarray(module.apply({}, jnp.asarray(x, jnp.float32), a, s,
                                 method=AnalyticMixture.log_prob))
  for i in range(b):
    ref = -s * _np_grad(x[i], a, s)
    assert np.linalg.norm(eps[i] - ref) <= 1e-4 * np.linalg.norm(ref), (i, eps[i], ref)
    np.testing.assert_allclose(logp[i], _np_log_p(x[i], a, s), rtol=1e-5)


def test_analytic_gaussian_over_images_and_config_mixture():
  mean = np.linspace(-0.5, 0.5, 48).reshape(4, 4, 3)
  std = 0.2
  module = AnalyticMixture.gaussian(mean, std)
  hash(module)                                           # tuples keep it hashable
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
  a, s = jnp.array([0.8, 1.0]), jnp.array([0.6, 0.05])
  eps = jax.jit(module.apply)({}, x, a, s)
  a4, s4 = np.asarray(a)[:, None, None, None], np.asarray(s)[:, None, None, None]
  ref = s4 * (np.asarray(x) - a4 * mean) / (a4 ** 2 * std ** 2 + s4 ** 2)
  assert eps.shape == x.shape
  np.testing.assert_allclose(eps, ref, rtol=1e-5, atol=1e-6)
  # The config mixture (NCSN toy: 0.8 N((5,5), I) + 0.2 N((-5,-5), I)).
  data = get_config("ncsn").data
  mix = make_model(_model_cfg(name="analytic"), data_cfg=data)
  pts = jnp.array([[5.0, 5.0], [-5.0, -5.0], [0.3, -0.1]])
  # Far from the (-5,-5) mode the mixture is one Gaussian N((5,5), (1 + s^2) I).
  out = np.asarray(mix.apply({}, pts, 1.0, 2.0))
  np.testing.assert_allclose(out[0], [0.0, 0.0], atol=1e-5)
  np.testing.assert_allclose(out[1], [0.0, 0.0], atol=1e-5)
  assert mix.init(jax.random.key(0), pts, 1.0, 2.0) == {}

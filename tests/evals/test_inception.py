"""diffusion/evals/inception.py: pytorch-fid's FID InceptionV3 in Flax, layer by layer and
against Keras' InceptionV3; preprocessing against torch's bilinear resize; weights
converted from a random state dict (inception_convert) and loaded."""

import collections
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusion.errors import ConfigError
from diffusion.evals import inception, inception_convert

# ---------------------------------------------------------------------------
# The FID Inception's layer table (pytorch-fid's FID Inception = torchvision
# Inception3 with FIDInceptionA/C/E blocks), written out from the architecture:
# (state_dict prefix, in_channels, out_channels, kh, kw) in definition order.
# ---------------------------------------------------------------------------


def _fid_inception_convs():
  convs = []

  def c(name, i, o, kh, kw=None):
    convs.append((name, i, o, kh, kw or kh))

  c("Conv2d_1a_3x3", 3, 32, 3)
  c("Conv2d_2a_3x3", 32, 32, 3)
  c("Conv2d_2b_3x3", 32, 64, 3)
  c("Conv2d_3b_1x1", 64, 80, 1)
  c("Conv2d_4a_3x3", 80, 192, 3)

  def block_a(p, i, pool_features):
    c(f"{p}.branch1x1", i, 64, 1)
    c(f"{p}.branch5x5_1", i, 48, 1)
    c(f"{p}.branch5x5_2", 48, 64, 5)
    c(f"{p}.branch3x3dbl_1", i, 64, 1)
    c(f"{p}.branch3x3dbl_2", 64, 96, 3)
    c(f"{p}.branch3x3dbl_3", 96, 96, 3)
    c(f"{p}.branch_pool", i, pool_features, 1)

  def block_b(p, i):
    c(f"{p}.branch3x3", i, 384, 3)
    c(f"{p}.branch3x3dbl_1", i, 64, 1)
    c(f"{p}.branch3x3dbl_2", 64, 96, 3)
    c(f"{p}.branch3x3dbl_3", 96, 96, 3)

  def block_c(p, i, c7):
    c(f"{p}.branch1x1", i, 192, 1)
    c(f"{p}.branch7x7_1", i, c7, 1)
    c(f"{p}.branch7x7_2", c7, c7, 1, 7)
    c(f"{p}.branch7x7_3", c7, 192, 7, 1)
    c(f"{p}.branch7x7dbl_1", i, c7, 1)
    c(f"{p}.branch7x7dbl_2", c7, c7, 7, 1)
    c(f"{p}.branch7x7dbl_3", c7, c7, 1, 7)
    c(f"{p}.branch7x7dbl_4", c7, c7, 7, 1)
    c(f"{p}.branch7x7dbl_5", c7, 192, 1, 7)
    c(f"{p}.branch_pool", i, 192, 1)

  def block_d(p, i):
    c(f"{p}.branch3x3_1", i, 192, 1)
    c(f"{p}.branch3x3_2", 192, 320, 3)
    c(f"{p}.branch7x7x3_1", i, 192, 1)
    c(f"{p}.branch7x7x3_2", 192, 192, 1, 7)
    c(f"{p}.branch7x7x3_3", 192, 192, 7, 1)
    c(f"{p}.branch7x7x3_4", 192, 192, 3)

  def block_e(p, i):
    c(f"{p}.branch1x1", i, 320, 1)
    c(f"{p}.branch3x3_1", i, 384, 1)
    c(f"{p}.branch3x3_2a", 384, 384, 1, 3)
    c(f"{p}.branch3x3_2b", 384, 384, 3, 1)
    c(f"{p}.branch3x3dbl_1", i, 448, 1)
    c(f"{p}.branch3x3dbl_2", 448, 384, 3)
    c(f"{p}.branch3x3dbl_3a", 384, 384, 1, 3)
    c(f"{p}.branch3x3dbl_3b", 384, 384, 3, 1)
    c(f"{p}.branch_pool", i, 192, 1)

  block_a("Mixed_5b", 192, 32)   # -> 256 channels
  block_a("Mixed_5c", 256, 64)   # -> 288
  block_a("Mixed_5d", 288, 64)   # -> 288
  block_b("Mixed_6a", 288)       # -> 768
  block_c("Mixed_6b", 768, 128)
  block_c("Mixed_6c", 768, 160)
  block_c("Mixed_6d", 768, 160)
  block_c("Mixed_6e", 768, 192)
  block_d("Mixed_7a", 768)       # -> 1280
  block_e("Mixed_7b", 1280)      # -> 2048
  block_e("Mixed_7c", 2048)
  return convs


CONVS = _fid_inception_convs()


def test_inception_parameter_count_layer_by_layer():
  """94 conv+BN layers and the 2048 -> 1008 fc.

  Trainable: Σ (in·out·kh·kw + 2·out) + 2048·1008 + 1008 = 23,850,960; the
  state_dict also holds BN running mean/var (2·Σ out = 34,432):
  23,885,392 numbers (the figure usually quoted for pytorch-fid's network).
  torchvision's Inception3 without aux and with a 1000-way fc gives the known
  23,834,568 = 23,850,960 − 8·2049.
  """
  assert len(CONVS) == 94
  convs = sum(i * o * kh * kw + 2 * o for _, i, o, kh, kw in CONVS)
  bn_stats = 2 * sum(o for _, _, o, _, _ in CONVS)
  fc = 2048 * 1008 + 1008
  assert convs + fc == 23_850_960
  assert bn_stats == 34_432
  assert convs + fc + bn_stats == 23_885_392
  assert convs + 2048 * 1000 + 1000 == 23_834_568
  variables = inception.init_variables(shapes_only=True)
  assert inception.count_parameters(variables) == 23_850_960
  assert inception.count_parameters(variables, ("params", "batch_stats")) == 23_885_392


def test_inception_output_shapes():
  variables = inception.init_variables(shapes_only=True)
  x = jax.ShapeDtypeStruct((3, 299, 299, 3), jnp.float32)
  out = jax.eval_shape(lambda v, x: inception.FIDInceptionV3().apply(v, x), variables, x)
  assert out["pool"].shape == (3, 2048)
  assert out["logits"].shape == (3, 1008)
  assert out["logits_unbiased"].shape == (3, 1008)


def _torch_bilinear_resize(img, out_h, out_w):
  """numpy F.interpolate(mode='bilinear', align_corners=False) for [H, W, C]."""
  h, w = img.shape[:2]

  def coords(n_out, n_in):
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, src - i0

  y0, y1, fy = coords(out_h, h)
  x0, x1, fx = coords(out_w, w)
  top = img[y0][:, x0] * (1 - fx)[None, :, None] + img[y0][:, x1] * fx[None, :, None]
  bot = img[y1][:, x0] * (1 - fx)[None, :, None] + img[y1][:, x1] * fx[None, :, None]
  return top * (1 - fy)[:, None, None] + bot * fy[:, None, None]


@pytest.mark.parametrize("h, w, size", [(7, 5, 11), (32, 32, 299), (40, 33, 13)])
def test_preprocess_matches_torch_bilinear(h, w, size):
  img = np.random.default_rng(0).random((2, h, w, 3)).astype(np.float32)
  got = np.asarray(inception.preprocess(img, size))
  want = np.stack([_torch_bilinear_resize(im.astype(np.float64), size, size) for im in img])
  np.testing.assert_allclose(got, 2 * want - 1, atol=2e-5)
  gray = np.asarray(inception.preprocess(img[..., :1], size))
  assert gray.shape == (2, size, size, 3)


def test_fid_avg_pool_excludes_padding():
  ones = jnp.ones((1, 4, 4, 1))
  pooled = inception._avg_pool_3x3(ones)  # pylint: disable=protected-access
  np.testing.assert_allclose(np.asarray(pooled), 1.0)  # count_include_pad=True gives 4/9


def _random_state_dict(rng):
  """A pytorch-fid-shaped state_dict of random numbers (torch naming and layouts)."""
  sd = collections.OrderedDict()
  for name, i, o, kh, kw in CONVS:
    sd[f"{name}.conv.weight"] = (rng.standard_normal((o, i, kh, kw)) *
                                 np.sqrt(2.0 / (i * kh * kw))).astype(np.float32)
    sd[f"{name}.bn.weight"] = rng.uniform(0.8, 1.2, o).astype(np.float32)
    sd[f"{name}.bn.bias"] = (0.1 * rng.standard_normal(o)).astype(np.float32)
    sd[f"{name}.bn.running_mean"] = (0.1 * rng.standard_normal(o)).astype(np.float32)
    sd[f"{name}.bn.running_var"] = rng.uniform(0.5, 1.5, o).astype(np.float32)
    sd[f"{name}.bn.num_batches_tracked"] = np.array(0, np.int64)
  sd["fc.weight"] = (0.02 * rng.standard_normal((1008, 2048))).astype(np.float32)
  sd["fc.bias"] = (0.02 * rng.standard_normal(1008)).astype(np.float32)
  return sd


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  """A random state_dict converted to .npz and loaded back."""
  sd = _random_state_dict(np.random.default_rng(0))
  path = str(tmp_path_factory.mktemp("inc") / "inception_fid.npz")
  arrays = inception_convert.state_dict_to_arrays(sd)
  np.savez(path, **arrays)
  return sd, path, inception.load_inception(path)


def test_conversion_maps_torch_layouts(converted):
  sd, _, net = converted
  v = net.variables
  np.testing.assert_array_equal(
      np.asarray(v["params"]["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"]),
      sd["Mixed_6b.branch7x7_2.conv.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(np.asarray(v["batch_stats"]["Mixed_7c"]["branch_pool"]["bn"]["var"]),
                                sd["Mixed_7c.branch_pool.bn.running_var"])
  np.testing.assert_array_equal(np.asarray(v["params"]["fc"]["kernel"]), sd["fc.weight"].T)
  np.testing.assert_array_equal(np.asarray(v["params"]["Conv2d_1a_3x3"]["bn"]["scale"]),
                                sd["Conv2d_1a_3x3.bn.weight"])


def test_features_run_and_logits_relation(converted):
  sd, _, net = converted
  imgs = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
  f = net.features(imgs, batch_size=2)  # 2 + a zero-padded batch of 1
  assert f["pool"].shape == (3, 2048) and f["logits"].shape == (3, 1008)
  assert np.isfinite(f["pool"]).all() and (f["pool"] >= 0).all()  # mean of ReLUs
  w, b = sd["fc.weight"].astype(np.float64), sd["fc.bias"].astype(np.float64)
  np.testing.assert_allclose(f["logits_unbiased"], f["pool"] @ w.T, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(f["logits"], f["pool"] @ w.T + b, rtol=1e-4, atol=1e-5)
  single = net.features(imgs[2:], batch_size=2)
  np.testing.assert_allclose(single["pool"], f["pool"][2:], rtol=1e-4, atol=1e-6)


def test_missing_weights_is_one_line_config_error(tmp_path):
  for path in ("", str(tmp_path / "nope.npz")):
    with pytest.raises(ConfigError) as e:
      inception.load_inception(path)
    msg = str(e.value)
    assert "eval.fid.inception_weights" in msg and "convert" in msg and "\n" not in msg
  bad = tmp_path / "bad.npz"
  np.savez(bad, x=np.zeros(3))
  with pytest.raises(ConfigError, match="eval.fid.inception_weights"):
    inception.load_inception(str(bad))


@pytest.mark.slow  # 10-18 s on 2 shared cores (TensorFlow import + Keras model build)
def test_architecture_matches_keras_inception_v3(converted):
  """Same layers, paddings, strides, BN eps and pools as TF/Keras InceptionV3.

  Keras's InceptionV3 is the same architecture except Mixed_7c's pool branch
  (average instead of the FID graph's max) and BN without a scale; TF's
  'same' average pooling excludes the padding, like the FID blocks. So with
  last_pool='avg', BN scale 1 and copied weights, the 2048-d features agree.
  """
  os.environ.setdefault("KERAS_BACKEND", "tensorflow")
  keras = pytest.importorskip("keras")
  if keras.backend.backend() != "tensorflow":
    pytest.skip("needs Keras' TensorFlow backend as the independent implementation")
  model = keras.applications.InceptionV3(weights=None, include_top=False, pooling="avg",
                                         input_shape=(139, 139, 3))  # Mixed_7c sees 3x3
  by_suffix = lambda l: int(re.sub(r"\D", "", l.name) or 0)  # noqa: E731 (creation order)
  k_convs = sorted([l for l in model.layers if isinstance(l, keras.layers.Conv2D)], key=by_suffix)
  k_bns = sorted([l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)],
                 key=by_suffix)
  sd, _, _ = converted
  sd = dict(sd)
  for (name, *_), conv, bn in zip(CONVS, k_convs, k_bns):
    conv.set_weights([sd[f"{name}.conv.weight"].transpose(2, 3, 1, 0)])
    sd[f"{name}.bn.weight"] = np.ones_like(sd[f"{name}.bn.weight"])
    bn.set_weights([sd[f"{name}.bn.bias"], sd[f"{name}.bn.running_mean"],
                    sd[f"{name}.bn.running_var"]])
  variables = inception.load_variables_from_arrays(inception_convert.state_dict_to_arrays(sd))
  x = np.random.default_rng(2).uniform(-1, 1, (2, 139, 139, 3)).astype(np.float32)
  want = np.asarray(model(x, training=False))
  got = inception.FIDInceptionV3(last_pool="avg").apply(variables, jnp.asarray(x))["pool"]
  np.testing.assert_allclose(np.asarray(got), want, rtol=2e-3, atol=2e-4 * np.abs(want).max())
  fid = inception.FIDInceptionV3().apply(variables, jnp.asarray(x))["pool"]
  assert np.abs(np.asarray(fid) - want).max() > 1e-3  # the max-pool quirk changes features

"""Bits/dim, FID / KID / IS maths and the FID InceptionV3, against independent computations."""

import collections
import io
import math
import os
import pickle
import re
import sys
import types
import zipfile

import numpy as np
import pytest

import diffusion

import jax
import jax.numpy as jnp

from diffusion.evals import metrics as evaluation
from diffusion.evals import inception
from diffusion.evals import inception_convert
from diffusion.io import torch_pickle
from diffusion.errors import ConfigError

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


# ---- PyTorch checkpoint reading without torch --------------------------------------


class _Storage:
  def __init__(self, key, data):
    self.key, self.data = key, data


class _Tensor:
  def __init__(self, storage, offset, shape, stride):
    self.args = (storage, offset, shape, stride)

  def __reduce_ex__(self, proto):
    storage, offset, shape, stride = self.args
    return (sys.modules["torch._utils"]._rebuild_tensor_v2,
            (storage, offset, shape, stride, False, collections.OrderedDict()))


def _fake_torch(monkeypatch):
  """Just enough of a 'torch' module for pickle to write torch's global names."""
  torch = types.ModuleType("torch")
  utils = types.ModuleType("torch._utils")

  def _rebuild_tensor_v2(*args):  # never called: only its name is pickled
    raise AssertionError

  _rebuild_tensor_v2.__module__ = "torch._utils"
  _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
  utils._rebuild_tensor_v2 = _rebuild_tensor_v2
  float_storage = type("FloatStorage", (), {"__module__": "torch", "__qualname__": "FloatStorage"})
  torch.FloatStorage = float_storage
  torch._utils = utils
  monkeypatch.setitem(sys.modules, "torch", torch)
  monkeypatch.setitem(sys.modules, "torch._utils", utils)
  return float_storage


def _example_tensors():
  base = np.arange(24, dtype=np.float32)
  storage = _Storage("0", base)
  other = _Storage("1", np.linspace(0, 1, 6).astype(np.float32))
  sd = collections.OrderedDict([
      ("a.weight", _Tensor(storage, 0, (2, 3), (3, 1))),           # contiguous
      ("a.bias", _Tensor(storage, 6, (3, 2), (1, 3))),             # transposed view, offset
      ("b.weight", _Tensor(other, 0, (6,), (1,))),
  ])
  want = {"a.weight": base[:6].reshape(2, 3), "a.bias": base[6:12].reshape(2, 3).T,
          "b.weight": other.data}
  return sd, [storage, other], want


def _pickler(buf, float_storage):
  p = pickle.Pickler(buf, protocol=2)
  p.persistent_id = lambda obj: (("storage", float_storage, obj.key, "cpu", obj.data.size)
                                 if isinstance(obj, _Storage) else None)
  return p


def test_reads_torch_zip_and_legacy_checkpoints(tmp_path, monkeypatch):
  float_storage = _fake_torch(monkeypatch)
  sd, storages, want = _example_tensors()
  buf = io.BytesIO()
  _pickler(buf, float_storage).dump(sd)
  zpath = tmp_path / "new.pth"
  with zipfile.ZipFile(zpath, "w") as zf:
    zf.writestr("new/data.pkl", buf.getvalue())
    for st in storages:
      zf.writestr(f"new/data/{st.key}", st.data.tobytes())
  lpath = tmp_path / "legacy.pth"
  with open(lpath, "wb") as f:
    for header in (0x1950a86a20f9469cfc6c, 1001, {"little_endian": True}):
      pickle.dump(header, f, protocol=2)
    _pickler(f, float_storage).dump(sd)
    pickle.dump([st.key for st in storages], f, protocol=2)
    for st in storages:
      f.write(np.int64(st.data.size).tobytes())
      f.write(st.data.tobytes())
  for path in (zpath, lpath):
    got = torch_pickle.read_torch_checkpoint(str(path))
    assert list(got) == list(want)
    for k in want:
      np.testing.assert_array_equal(got[k], want[k])


def test_convert_cli_end_to_end(tmp_path, monkeypatch):
  """A full-size random pytorch-fid-like .pth (zip format) -> npz -> load_inception."""
  sd = _random_state_dict(np.random.default_rng(9))
  src, dst = tmp_path / "pt_inception.pth", tmp_path / "inception_fid.npz"
  with monkeypatch.context() as m:
    float_storage = _fake_torch(m)
    storages, tensors = [], collections.OrderedDict()
    for i, (name, a) in enumerate(sd.items()):
      if a.dtype != np.float32:
        continue  # num_batches_tracked (int64) is dropped by the converter anyway
      st = _Storage(str(i), np.ascontiguousarray(a).ravel())
      storages.append(st)
      strides = tuple(s // 4 for s in np.ascontiguousarray(a).strides)
      tensors[name] = _Tensor(st, 0, a.shape, strides)
    buf = io.BytesIO()
    _pickler(buf, float_storage).dump(tensors)
    with zipfile.ZipFile(src, "w") as zf:
      zf.writestr("archive/data.pkl", buf.getvalue())
      for st in storages:
        zf.writestr(f"archive/data/{st.key}", st.data.tobytes())
  # Not the released file: refused by its SHA-256, converted with --any_weights.
  assert not inception_convert.sha256(str(src)).startswith(
      inception_convert.EXPECTED_SHA256_PREFIX)
  command = "python -m diffusion.evals.inception_convert"   # argv[0] of the command
  assert inception_convert.main([command, str(src), str(dst)]) == 1 and not dst.exists()
  assert inception_convert.main([command, str(src), str(dst)], any_weights=True) == 0
  v = inception.load_inception(str(dst)).variables
  np.testing.assert_array_equal(np.asarray(v["params"]["Mixed_7b"]["branch3x3_2a"]["conv"]["kernel"]),
                                sd["Mixed_7b.branch3x3_2a.conv.weight"].transpose(2, 3, 1, 0))
  assert inception_convert.main([command, str(tmp_path / "missing.pth"), str(dst)]) == 1


def test_checkpoint_reader_refuses_code(tmp_path):
  zpath = tmp_path / "evil.pth"
  with zipfile.ZipFile(zpath, "w") as zf:
    zf.writestr("evil/data.pkl", pickle.dumps(os.system, protocol=2))
  with pytest.raises(pickle.UnpicklingError, match="refusing"):
    torch_pickle.read_torch_checkpoint(str(zpath))


# ---- FID / KID / IS ---------------------------------------------------------------


def test_frechet_distance_against_eigenvalue_formula():
  rng = np.random.default_rng(3)
  d = 6
  a = rng.standard_normal((400, d)) @ rng.standard_normal((d, d))
  b = rng.standard_normal((300, d)) @ rng.standard_normal((d, d)) + 0.5
  mu1, s1 = evaluation.feature_statistics(a)
  mu2, s2 = evaluation.feature_statistics(b)
  np.testing.assert_allclose(s1, np.cov(a.T), rtol=1e-12)
  # tr (S1 S2)^{1/2} = Σ √eig(√S1 S2 √S1), √S1 from the symmetric eigendecomposition.
  w, u = np.linalg.eigh(s1)
  root1 = u @ np.diag(np.sqrt(w)) @ u.T
  tr_covmean = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ s2 @ root1), 0, None)))
  want = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean
  assert evaluation.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-9)
  assert abs(evaluation.frechet_distance(mu1, s1, mu1, s1)) < 1e-8
  # 1-D Gaussians: (μ1 − μ2)² + (σ1 − σ2)².
  assert evaluation.frechet_distance([0.0], [[4.0]], [1.0], [[9.0]]) == pytest.approx(2.0)


def test_frechet_distance_of_rank_deficient_covariances_is_quiet_and_right():
  """Fewer samples than dimensions (a small cfid) or identical samples: singular
  covariances, no LinAlgWarning, and still the closed form's value."""
  import warnings  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(5)
  a, b = rng.standard_normal((5, 12)), rng.standard_normal((7, 12)) + 0.3
  mu1, s1 = evaluation.feature_statistics(a)
  mu2, s2 = evaluation.feature_statistics(b)
  assert np.linalg.matrix_rank(s1) == 4
  w, u = np.linalg.eigh(s1)
  root1 = u @ np.diag(np.sqrt(np.clip(w, 0, None))) @ u.T
  tr_covmean = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ s2 @ root1), 0, None)))
  want = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    got = evaluation.frechet_distance(mu1, s1, mu2, s2)
    # Identical samples (blank images): zero covariance, so d² = ‖μ₁ − μ₂‖² + tr(Σ₂).
    blank = evaluation.frechet_distance(np.zeros(12), np.zeros((12, 12)), mu2, s2)
  assert got == pytest.approx(want, rel=1e-6)
  assert blank == pytest.approx(np.sum(mu2 ** 2) + np.trace(s2), rel=1e-6)


def test_kid_against_explicit_loops():
  rng = np.random.default_rng(4)
  f1, f2 = rng.standard_normal((12, 5)), rng.standard_normal((15, 5)) + 0.3
  m, subsets, seed = 6, 3, 7
  got_mean, got_std = evaluation.kernel_inception_distance(f1, f2, subsets, m, seed)
  k = lambda x, y: (np.dot(x, y) / 5 + 1) ** 3  # noqa: E731
  draw = np.random.default_rng(seed)
  mmds = []
  for _ in range(subsets):
    x = f1[draw.choice(12, m, replace=False)]
    y = f2[draw.choice(15, m, replace=False)]
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    mmds.append(sxx / (m * (m - 1)) + syy / (m * (m - 1)) - 2 * sxy / (m * m))
  assert got_mean == pytest.approx(np.mean(mmds), rel=1e-10)
  assert got_std == pytest.approx(np.std(mmds), rel=1e-10)


def test_inception_score_cases():
  k, splits = 8, 2
  confident = 50.0 * np.eye(k)[np.arange(k * splits) % k]
  assert evaluation.inception_score(confident, splits)[0] == pytest.approx(k, rel=1e-6)
  assert evaluation.inception_score(np.zeros((10, k)), 2) == pytest.approx((1.0, 0.0))
  logits = np.random.default_rng(5).standard_normal((20, k))
  scores = []
  for part in (logits[:10], logits[10:]):
    p = np.exp(part) / np.exp(part).sum(1, keepdims=True)
    py = p.mean(0)
    scores.append(math.exp(np.mean([np.sum(pi * np.log(pi / py)) for pi in p])))
  got = evaluation.inception_score(logits, 2)
  assert got == pytest.approx((np.mean(scores), np.std(scores)), rel=1e-10)


def test_reference_stats_are_cached(tmp_path):
  calls = []
  feats = np.random.default_rng(6).standard_normal((50, 16))  # small d: sqrtm is O(d³)

  def compute():
    calls.append(1)
    return feats

  a = evaluation.reference_stats(str(tmp_path / "w"), "cifar10/train", 50, compute)
  b = evaluation.reference_stats(str(tmp_path / "w"), "cifar10/train", 50, compute)
  assert len(calls) == 1
  np.testing.assert_array_equal(a["mu"], b["mu"])
  np.testing.assert_allclose(b["sigma"], np.cov(feats.T), rtol=1e-12)
  assert os.path.basename(evaluation.reference_stats_path("w", "cifar10/train", 50)) == \
      "fid_stats_cifar10_train_50.npz"
  c = evaluation.reference_stats(str(tmp_path / "w"), "cifar10/train", 50, compute,
                                 keep_features=True)  # cache lacks features: recompute
  assert len(calls) == 2 and c["features"].shape == (50, 16)
  sample = {"pool": feats[:20] + 0.1, "logits_unbiased": np.zeros((20, 1008))}
  m = evaluation.sample_quality_metrics(sample, c, is_splits=2, kid_subsets=2,
                                        kid_subset_size=10)
  assert set(m) == {"fid", "is_mean", "is_std", "kid_mean", "kid_std"}
  assert m["is_mean"] == pytest.approx(1.0)


# ---- bits/dim ------------------------------------------------------------------------


def _phi(x):
  return 0.5 * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


@pytest.fixture(scope="module")
def tiny_bpd():
  """T = 20 linear schedule, 8x8x1 data on the 8-bit grid, eps = a random linear map."""
  T, B = 20, 4
  process = diffusion.make_process(dict(variant="ddpm", schedule="linear", num_timesteps=T))
  rng = np.random.default_rng(7)
  W = (0.1 * rng.standard_normal((64, 64))).astype(np.float32)
  x0 = (rng.integers(0, 256, (B, 8, 8, 1)) / 127.5 - 1.0).astype(np.float32)

  def eps_fn(x, t):
    return (x.reshape(x.shape[0], -1) @ jnp.asarray(W)).reshape(x.shape)

  key = jax.random.PRNGKey(8)
  out = evaluation.calc_bpd(eps_fn, process, x0, key, var_type="fixedlarge", clip_x0=True)
  return dict(T=T, process=process, W=W, x0=x0, eps_fn=eps_fn, key=key, out=out)


def test_bpd_terms_are_finite_and_sum_to_total(tiny_bpd):
  out, T = tiny_bpd["out"], tiny_bpd["T"]
  assert out["terms_bpd"].shape == (4, T) and out["total_bpd"].shape == (4,)
  for v in out.values():
    assert np.isfinite(np.asarray(v)).all()
  assert (np.asarray(out["terms_bpd"]) >= -1e-6).all()
  total = np.asarray(out["terms_bpd"], np.float64).sum(1) + np.asarray(out["prior_bpd"])
  np.testing.assert_allclose(np.asarray(out["total_bpd"]), total, rtol=1e-5)


def test_bpd_terms_against_numpy(tiny_bpd):
  """Recompute term_t (KL, t > 0), term_0 (decoder NLL) and L_T in float64 numpy."""
  T, W, x0, key = tiny_bpd["T"], tiny_bpd["W"], tiny_bpd["x0"], tiny_bpd["key"]
  out = tiny_bpd["out"]
  b = np.linspace(1e-4, 0.02, T)
  ab = np.cumprod(1 - b)
  ab_prev = np.append(1.0, ab[:-1])
  post = b * (1 - ab_prev) / (1 - ab)
  c1, c2 = b * np.sqrt(ab_prev) / (1 - ab), (1 - ab_prev) * np.sqrt(1 - b) / (1 - ab)
  x = x0.astype(np.float64).reshape(4, -1)
  for t in (T - 1, 7, 1, 0):
    noise = np.asarray(jax.random.normal(jax.random.fold_in(key, t), x0.shape),
                       np.float64).reshape(4, -1)
    xt = np.sqrt(ab[t]) * x + np.sqrt(1 - ab[t]) * noise
    eps = xt @ W.astype(np.float64)
    x0_hat = np.clip((xt - np.sqrt(1 - ab[t]) * eps) / np.sqrt(ab[t]), -1, 1)
    mean_p = c1[t] * x0_hat + c2[t] * xt
    logvar_p = np.log(b[t]) if t > 0 else np.log(post[1])  # fixedlarge
    if t > 0:
      mean_q = c1[t] * x + c2[t] * xt
      logvar_q = np.log(post[t])
      kl = 0.5 * (-1 + logvar_p - logvar_q + np.exp(logvar_q - logvar_p)
                  + (mean_q - mean_p) ** 2 * np.exp(-logvar_p))
      want = kl.mean(1) / np.log(2)
    else:
      inv = np.exp(-0.5 * logvar_p)
      plus, minus = _phi(inv * (x - mean_p + 1 / 255)), _phi(inv * (x - mean_p - 1 / 255))
      ll = np.where(x < -0.999, np.log(np.maximum(plus, 1e-12)),
                    np.where(x > 0.999, np.log(np.maximum(1 - minus, 1e-12)),
                             np.log(np.maximum(plus - minus, 1e-12))))
      want = -ll.mean(1) / np.log(2)
    np.testing.assert_allclose(np.asarray(out["terms_bpd"])[:, t], want, rtol=2e-3, atol=1e-5)
  prior = 0.5 * (-ab[-1] - np.log(1 - ab[-1]) + ab[-1] * x ** 2).mean(1) / np.log(2)
  np.testing.assert_allclose(np.asarray(out["prior_bpd"]), prior, rtol=1e-4)


def test_bpd_learned_variance_and_errors(tiny_bpd):
  p, eps_fn, x0, key = tiny_bpd["process"], tiny_bpd["eps_fn"], tiny_bpd["x0"], tiny_bpd["key"]
  learned = lambda x, t: (eps_fn(x, t), jnp.ones_like(x))  # noqa: E731  v = +1 -> log β_t
  out = evaluation.calc_bpd(learned, p, x0, key, var_type="learned_range")
  # learned_range with v = 1 equals fixedlarge except at t = 0 (log β_0 vs log β̃_1).
  np.testing.assert_allclose(np.asarray(out["terms_bpd"])[:, 1:],
                             np.asarray(tiny_bpd["out"]["terms_bpd"])[:, 1:], rtol=1e-5)
  agg = evaluation.evaluate_bpd(eps_fn, p, [x0[:2], x0[2:]], key)
  assert np.isfinite(agg["bpd"]) and agg["num_examples"] == 4 and agg["terms_bpd"].shape == (20,)
  ve = diffusion.make_process(dict(variant="ncsn"))
  with pytest.raises(ConfigError, match="bits/dim applies to VP"):
    evaluation.calc_bpd(eps_fn, ve, x0, key)
  with pytest.raises(ConfigError, match="learned_range"):
    evaluation.calc_bpd(eps_fn, p, x0, key, var_type="learned_range")




def test_an_evaluator_that_does_not_apply_fails_before_anything_is_written(tmp_path,
                                                                          monkeypatch):
  """Each evaluator owns its rule (bits/dim needs 8-bit images on a VP process, FID
  images): a run that enables one where it does not apply fails in one line before the
  loop reads data or creates its workdir, as when config validation held these rules."""
  from diffusion import evals  # pylint: disable=import-outside-toplevel
  from diffusion.train import loop  # pylint: disable=import-outside-toplevel
  from tests.test_training import toy_config  # pylint: disable=import-outside-toplevel

  def no_data(*args, **kwargs):
    raise AssertionError("the data were opened before the evaluators' rules were checked")
  monkeypatch.setattr(loop, "make_source", no_data)
  cases = [("bpd", {"every": 8}, r"bits/dim \(eval.bpd, --bpd\) scores 8-bit images"),
           ("fid", {"every": 8, "inception_weights": str(tmp_path / "w.npz")},
            r"FID \(eval.fid, --fid\) needs image data")]
  for name, section, message in cases:
    config = toy_config()
    config.eval[name].update(section)
    with pytest.raises(ConfigError, match=message) as info:
      diffusion.train(config, str(tmp_path / "run"), progress=False)
    assert "\n" not in str(info.value) and not (tmp_path / "run").exists()
  ve = diffusion.make_family({"diffusion": {"variant": "ncsn"}}).config
  with pytest.raises(ConfigError, match="applies to VP variants"):
    evals.check_applies(ve, ["bpd"])


def test_fit_temperature_recovers_the_overconfidence_of_logits():
  """Labels drawn from softmax(z); a model that reports 3z is overconfident by T = 3.
  Temperature scaling (Guo et al. 2017) must find T ≈ 3 (20,000 draws: MC error ~2%)."""
  from diffusion.evals import classifier  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  z = rng.normal(0.0, 1.5, (20_000, 10))
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  labels = (p.cumsum(1) > rng.random((len(p), 1))).argmax(1)
  assert abs(classifier.fit_temperature(3.0 * z, labels) - 3.0) < 0.15
  assert abs(classifier.fit_temperature(z, labels) - 1.0) < 0.05

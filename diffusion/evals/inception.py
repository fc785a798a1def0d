"""InceptionV3 of the FID metric (TF graph 2015-12-05, as ported by pytorch-fid), in Flax.

FID, Inception Score and KID are only comparable with published numbers when
the features come from the exact network the reference implementations use:
the TensorFlow Inception graph of 2015-12-05. pytorch-fid ports it to PyTorch
as torchvision's Inception3 with four modified block types (its
``FIDInceptionA/C/E_1/E_2``). This module rebuilds that network layer by layer
with the same quirks:

* average pools inside the A, C and first E blocks exclude the padding
  (``count_include_pad=False``); the last E block (``Mixed_7c``) uses a
  max-pool in its pool branch;
* every conv is bias-free and followed by BatchNorm (eps 1e-3) and ReLU;
* input: images in [0, 1], resized bilinearly (half-pixel centres, no
  antialiasing = ``F.interpolate(..., align_corners=False)``) to 299x299, then
  scaled to [-1, 1];
* outputs: the 2048-d pool features (FID, KID) and the 1008-way logits of the
  TF graph's ``softmax`` layer (Inception Score).

Parameter names follow the PyTorch state_dict (``Mixed_5b.branch5x5_1.conv.weight``
-> ``Mixed_5b/branch5x5_1/conv/kernel``). The network has 23,850,960 trainable
parameters (convs, BN scale/bias, the 2048x1008 fc) plus 34,432 BN running
statistics: 23,885,392 numbers in the state_dict (tests check the count layer by layer).

Getting the weights (no network access is needed at run time):

1. Download pytorch-fid's converted FID weights
   https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
   (about 92 MB; pytorch-fid's ``FID_WEIGHTS_URL``).
2. Convert them once to an .npz this module reads (:mod:`diffusion.evals.inception_convert`)::

     python -m diffusion.evals.inception_convert pt_inception-2015-12-05-6726825d.pth inception_fid.npz

3. Point the config at it: ``--config.eval.fid.inception_weights=/path/inception_fid.npz``.

Usage::

  net = load_inception('inception_fid.npz')  # InceptionNet(apply_fn, variables)
  feats = net.features(images01)             # dict of numpy arrays: pool [N, 2048], logits [N, 1008]
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from diffusion import trees
from diffusion.errors import ConfigError

INCEPTION_SIZE = 299
FEATURE_DIM = 2048
NUM_LOGITS = 1008
_BN_EPS = 1e-3
_PRECISION = jax.lax.Precision.HIGHEST  # FID is sensitive to TF32/bf16 matmuls on GPUs.


# ---------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------


class BasicConv2d(nn.Module):
  """Bias-free conv + BatchNorm (inference statistics, eps 1e-3) + ReLU."""
  features: int
  kernel_size: Tuple[int, int]
  strides: Tuple[int, int] = (1, 1)
  padding: Tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x):
    ph, pw = self.padding
    x = nn.Conv(self.features, self.kernel_size, strides=self.strides,
                padding=((ph, ph), (pw, pw)), use_bias=False, precision=_PRECISION,
                name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=_BN_EPS, name="bn")(x)
    return nn.relu(x)


def _avg_pool_3x3(x):
  # FID blocks: padding excluded from the average (count_include_pad=False).
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                     count_include_pad=False)


class InceptionA(nn.Module):
  """pytorch-fid FIDInceptionA: 1x1 | 5x5 | double 3x3 | avg-pool + 1x1."""
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv2d(64, (1, 1), name="branch1x1")(x)
    b5 = BasicConv2d(48, (1, 1), name="branch5x5_1")(x)
    b5 = BasicConv2d(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
    b3 = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
    b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
    b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
    bp = BasicConv2d(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """torchvision InceptionB (Mixed_6a): grid reduction 35 -> 17."""

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv2d(384, (3, 3), strides=(2, 2), name="branch3x3")(x)
    bd = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
    bd = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = BasicConv2d(96, (3, 3), strides=(2, 2), name="branch3x3dbl_3")(bd)
    bp = nn.max_pool(x, (3, 3), strides=(2, 2))
    return jnp.concatenate([b3, bd, bp], axis=-1)


class InceptionC(nn.Module):
  """pytorch-fid FIDInceptionC: factorised 7x7 branches, avg-pool without padding count."""
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    b1 = BasicConv2d(192, (1, 1), name="branch1x1")(x)
    b7 = BasicConv2d(c7, (1, 1), name="branch7x7_1")(x)
    b7 = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    bd = BasicConv2d(c7, (1, 1), name="branch7x7dbl_1")(x)
    bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
    bd = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
    bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
    bd = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
    bp = BasicConv2d(192, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """torchvision InceptionD (Mixed_7a): grid reduction 17 -> 8."""

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv2d(192, (1, 1), name="branch3x3_1")(x)
    b3 = BasicConv2d(320, (3, 3), strides=(2, 2), name="branch3x3_2")(b3)
    b7 = BasicConv2d(192, (1, 1), name="branch7x7x3_1")(x)
    b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = BasicConv2d(192, (3, 3), strides=(2, 2), name="branch7x7x3_4")(b7)
    bp = nn.max_pool(x, (3, 3), strides=(2, 2))
    return jnp.concatenate([b3, b7, bp], axis=-1)


class InceptionE(nn.Module):
  """pytorch-fid FIDInceptionE_1 (pool='avg') / FIDInceptionE_2 (pool='max')."""
  pool: str = "avg"

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv2d(320, (1, 1), name="branch1x1")(x)
    b3 = BasicConv2d(384, (1, 1), name="branch3x3_1")(x)
    b3 = jnp.concatenate([
        BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
        BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
    bd = BasicConv2d(448, (1, 1), name="branch3x3dbl_1")(x)
    bd = BasicConv2d(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([
        BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
        BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], axis=-1)
    if self.pool == "avg":
      bp = _avg_pool_3x3(x)
    else:
      # The TF graph's last block max-pools here (a bug pytorch-fid keeps on purpose).
      bp = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    bp = BasicConv2d(192, (1, 1), name="branch_pool")(bp)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
  """The FID InceptionV3.

  Call: x [B, H, W, 3] float32 already preprocessed (bilinear to 299x299, in
  [-1, 1]; see :func:`preprocess`). Returns a dict:
    pool: [B, 2048] float32 (the 'pool_3' features used by FID/KID);
    logits: [B, 1008] float32, fc with bias (the TF graph's softmax logits);
    logits_unbiased: [B, 1008] float32, fc without bias (what the original
      Inception-Score code feeds to the softmax: ``matmul(pool3, w)``).

  Attributes:
    last_pool: pool of Mixed_7c's pool branch: 'max' (the FID graph) or 'avg'
      (torchvision's / Keras's Inception v3; used by the tests to compare the
      architecture with Keras's implementation).
  """
  last_pool: str = "max"

  @nn.compact
  def __call__(self, x):
    x = BasicConv2d(32, (3, 3), strides=(2, 2), name="Conv2d_1a_3x3")(x)
    x = BasicConv2d(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = BasicConv2d(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
    x = nn.max_pool(x, (3, 3), strides=(2, 2))
    x = BasicConv2d(80, (1, 1), name="Conv2d_3b_1x1")(x)
    x = BasicConv2d(192, (3, 3), name="Conv2d_4a_3x3")(x)
    x = nn.max_pool(x, (3, 3), strides=(2, 2))
    x = InceptionA(32, name="Mixed_5b")(x)
    x = InceptionA(64, name="Mixed_5c")(x)
    x = InceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)
    x = InceptionC(128, name="Mixed_6b")(x)
    x = InceptionC(160, name="Mixed_6c")(x)
    x = InceptionC(160, name="Mixed_6d")(x)
    x = InceptionC(192, name="Mixed_6e")(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = InceptionE("avg", name="Mixed_7b")(x)
    x = InceptionE(self.last_pool, name="Mixed_7c")(x)
    pool = jnp.mean(x, axis=(1, 2))
    fc = nn.Dense(NUM_LOGITS, precision=_PRECISION, name="fc")
    logits = fc(pool)
    kernel = fc.variables["params"]["kernel"]
    logits_unbiased = jnp.dot(pool, kernel, precision=_PRECISION)
    return {"pool": pool, "logits": logits, "logits_unbiased": logits_unbiased}


def preprocess(images: jax.Array, size: int = INCEPTION_SIZE) -> jax.Array:
  """Images [B, H, W, C] in [0, 1] (C = 1 or 3) -> [B, size, size, 3] in [-1, 1].

  Bilinear resize with half-pixel centres and no antialiasing, which is what
  pytorch-fid's ``F.interpolate(x, (299, 299), mode='bilinear',
  align_corners=False)`` does (jax.image.resize's default antialias=True would
  blur when downsampling large images). Grayscale is repeated to 3 channels.
  """
  images = jnp.asarray(images, jnp.float32)
  if images.shape[-1] == 1:
    images = jnp.repeat(images, 3, axis=-1)
  if images.shape[-1] != 3:
    raise ValueError(f"images must have 1 or 3 channels, got shape {images.shape}")
  b, h, w, c = images.shape
  if (h, w) != (size, size):
    images = jax.image.resize(images, (b, size, size, c), method="bilinear",
                              antialias=False)
  return 2.0 * images - 1.0


# ---------------------------------------------------------------------------
# Weights: npz <-> flax variables
# ---------------------------------------------------------------------------


def init_variables(key: Optional[jax.Array] = None, shapes_only: bool = True):
  """Random (or only shape-structured) variables {'params', 'batch_stats'} of the network."""
  module = FIDInceptionV3()
  x = jnp.zeros((1, INCEPTION_SIZE, INCEPTION_SIZE, 3), jnp.float32)
  key = jax.random.PRNGKey(0) if key is None else key
  if shapes_only:
    return jax.eval_shape(module.init, key, x)
  return jax.jit(module.init)(key, x)


def load_variables(path: str) -> Dict[str, Any]:
  """Reads converted weights from ``path`` (.npz) into flax variables.

  Raises ConfigError (one line) when the file is missing, unreadable or does
  not hold exactly the expected arrays.
  """
  if not path:
    raise ConfigError(
        "eval.fid.inception_weights is empty; FID/IS/KID need the FID Inception weights: "
        "download pt_inception-2015-12-05-6726825d.pth (pytorch-fid) and run "
        "'python -m diffusion.evals.inception_convert <pth> <npz>', then set "
        "--config.eval.fid.inception_weights=<npz>.")
  if not os.path.isfile(path):
    raise ConfigError(
        f"eval.fid.inception_weights={path!r} does not exist; create it with "
        "'python -m diffusion.evals.inception_convert pt_inception-2015-12-05-6726825d.pth "
        f"{path}' (see diffusion/inception_convert.py).")
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except Exception as e:  # noqa: BLE001 - any read failure is a bad file for the user
    reason = (str(e).splitlines() or [type(e).__name__])[0]
    raise ConfigError(f"eval.fid.inception_weights={path!r} is not a readable .npz ({reason}).") from e
  return load_variables_from_arrays(arrays, source=path)


def load_variables_from_arrays(arrays: Mapping[str, np.ndarray],
                               source: str = "<arrays>") -> Dict[str, Any]:
  """Converted arrays (npz naming) -> flax variables {'params', 'batch_stats'}.

  Every array the network needs must be present with its exact shape; else
  ConfigError naming ``source`` (the eval.fid.inception_weights file).
  """
  expected = init_variables(shapes_only=True)
  variables: Dict[str, Any] = {}
  for collection in ("params", "batch_stats"):
    flat = {}
    for name, spec in trees.flatten(expected[collection]).items():
      # e.g. Mixed_5b/branch1x1/bn/scale; names are unique across both collections.
      if name not in arrays:
        raise ConfigError(
            f"eval.fid.inception_weights={source!r} lacks array {name!r}; re-create it with "
            "'python -m diffusion.evals.inception_convert'.")
      a = np.asarray(arrays[name])
      if tuple(a.shape) != tuple(spec.shape):
        raise ConfigError(
            f"eval.fid.inception_weights={source!r}: array {name!r} has shape {a.shape}, "
            f"expected {tuple(spec.shape)}.")
      flat[name] = jnp.asarray(a, jnp.float32)
    variables[collection] = trees.unflatten(flat)
  return variables


# ---------------------------------------------------------------------------
# Feature extraction
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InceptionNet:
  """Loaded network: ``features(images)`` -> {'pool', 'logits', 'logits_unbiased'} numpy."""
  variables: Any

  def apply(self, images01: jax.Array) -> Dict[str, jax.Array]:
    """images01 [B, H, W, C] in [0, 1] -> dict of [B, 2048] / [B, 1008] float32 (jittable)."""
    return _apply_jit(self.variables, images01)

  def features(self, images01, batch_size: int = 200,
               on_progress=None) -> Dict[str, np.ndarray]:
    """Runs ``apply`` over ``images01`` [N, H, W, C] (numpy, uint8 or float in [0, 1]) in batches.

    uint8 input is divided by 255. The last short batch is zero-padded so that
    only one shape is compiled. ``on_progress(images done, N)`` after each batch.
    """
    images = np.asarray(images01)
    n = images.shape[0]
    out = {"pool": [], "logits": [], "logits_unbiased": []}
    for start in range(0, n, batch_size):
      chunk = images[start:start + batch_size]
      m = chunk.shape[0]
      if chunk.dtype == np.uint8:
        chunk = chunk.astype(np.float32) / 255.0
      if m < batch_size and n > batch_size:
        pad = np.zeros((batch_size - m,) + chunk.shape[1:], chunk.dtype)
        chunk = np.concatenate([chunk, pad])
      res = self.apply(jnp.asarray(chunk, jnp.float32))
      for k in out:
        out[k].append(np.asarray(res[k])[:m])
      if on_progress is not None:
        on_progress(start + m, n)
    return {k: np.concatenate(v).astype(np.float64) if v else
            np.zeros((0, FEATURE_DIM if k == "pool" else NUM_LOGITS)) for k, v in out.items()}


@jax.jit
def _apply_jit(variables, images01):
  return FIDInceptionV3().apply(variables, preprocess(images01))


def load_inception(path: str) -> InceptionNet:
  """Loads converted weights (config.eval.fid.inception_weights) into an InceptionNet."""
  return InceptionNet(load_variables(path))


def count_parameters(variables, collections: Sequence[str] = ("params",)) -> int:
  """Total number of scalars in the given variable collections."""
  return int(sum(int(np.prod(x.shape)) for c in collections
                 for x in jax.tree_util.tree_leaves(variables[c])))

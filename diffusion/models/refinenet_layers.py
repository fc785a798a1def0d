"""Building blocks of the NCSN and NCSNv2 RefineNets, in Flax linen, NHWC.

Written from the official PyTorch code (read for its facts only; it is GPL-3.0):
NCSN, ermongroup/ncsn@7f27f4a ``models/cond_refinenet_dilated.py``; NCSNv2,
ermongroup/ncsnv2@1bcea03 ``models/layers.py`` and ``models/normalization.py``.
Every convention below was checked against outputs of that code
(``tests/fixtures/make_ncsn_fixture.py``, ``tests/models/test_refinenet.py``).

Normalisation (the papers' "conditional instance normalisation++", NCSN's appendix on
its architecture; the code is the reference used here):

  IN++(x)_c = γ_c · (IN(x)_c + α_c · m̃_c) + β_c,
  IN(x)_c  = (x_c − μ_c) / √(var_c + 1e-5)      μ_c, var_c over H, W (biased var),
  m̃_c      = (μ_c − mean_c' μ_c') / √(var_c' μ_c' + 1e-5), var over the C channels
             *unbiased* (``torch.var``'s default, divisor C − 1).

  * :class:`CondInstanceNormPlus` (NCSN): γ, α, β are rows of one table ``embed``
    [num_classes, 3C] picked by the noise-level index, laid out [γ | α | β] along the
    last axis (the official ``embed(y).chunk(3)`` order).
  * :class:`InstanceNormPlus` (NCSNv2): γ, α, β are plain [C] parameters (names
    ``gamma``, ``alpha``, ``beta`` as in the official module).

  Both compute in float32 with the two-pass variance, whatever the compute dtype.

Convolutions (:func:`conv`): torch's zero padding equal to the dilation for 3x3
(``dilated_conv3x3``: ``padding=dilation``), 1 for plain 3x3, 0 for 1x1. Biases:
the residual blocks' convolutions, the shortcut, the fusion convolutions, the first and
last convolution have one; the convolutions inside the residual-conv units and the
chained residual pooling do not (``conv3x3(..., bias=False)`` there in both codes).
Initialisation is PyTorch's default, so a fresh network matches a fresh official one in
distribution: weight and bias U(−1/√fan_in, 1/√fan_in).

Down-sampling (:class:`ConvMeanPool`): convolution *then* the mean of each 2x2 block
(``ConvMeanPool``); its shortcut is the same with a 1x1 kernel. A stage with a
dilation does not down-sample at all: its "down" block is two dilated 3x3
convolutions with a dilated 3x3 shortcut (the official ``resample='down'`` with a
dilation), so spatial size is kept and only the receptive field grows.

Multi-resolution fusion (:func:`resize_bilinear_align_corners`): bilinear with
``align_corners=True`` (``F.interpolate(..., mode='bilinear', align_corners=True)``),
which ``jax.image.resize`` does not implement (it samples at half-pixel centres), so it
is written out here: output i samples the input at i·(n_in − 1)/(n_out − 1).

Chained residual pooling (:class:`CRPBlock`): 5x5 stride-1 pooling with 2 pixels of
padding; NCSN averages (``nn.AvgPool2d``, zeros in the padding *counted*: always /25),
NCSNv2 takes the maximum (``nn.MaxPool2d``, the padding never wins).
"""

import math
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any

NORM_EPS = 1e-5   # torch.nn.InstanceNorm2d's default eps, and the 1e-5 of the means term


def torch_uniform_init(fan_in: int):
  """PyTorch's default Conv2d initialiser for weights and biases: U(−1/√fan_in, 1/√fan_in).

  (``kaiming_uniform_(a=√5)`` gives this bound for the weight, and the bias uses it
  explicitly.)"""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def conv(features: int, name: str, dtype: Dtype, in_features: int, kernel_size: int = 3,
         dilation: int = 1, use_bias: bool = True) -> nn.Conv:
  """k x k convolution named ``name``, stride 1, zero padding ``dilation * (k // 2)``:
  [B, H, W, in_features] -> [B, H, W, features]. Parameters ``kernel`` [k, k, in_features,
  features] (float32) and, with ``use_bias``, ``bias`` [features]; PyTorch's default
  initialisation (``in_features`` gives its fan-in).

  Args:
    features: output channels.
    name: the parameter scope (the official attribute name).
    dtype: compute dtype.
    in_features: input channels.
    kernel_size: k (1 or 3 here).
    dilation: kernel dilation; the padding equals it for k = 3, as the official code.
    use_bias: whether the convolution has a bias.
  """
  k, d = kernel_size, dilation
  fan_in = in_features * k * k
  pad = d * (k // 2)
  return nn.Conv(features, (k, k), padding=((pad, pad), (pad, pad)), kernel_dilation=(d, d),
                 use_bias=use_bias, kernel_init=torch_uniform_init(fan_in),
                 bias_init=torch_uniform_init(fan_in), dtype=dtype, param_dtype=jnp.float32,
                 name=name)


def _instance_norm_plus_core(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The two parameter-free parts of IN++ in float32.

  Args:
    x: [B, H, W, C].

  Returns:
    (IN(x) [B, H, W, C], m̃ [B, 1, 1, C]): the instance-normalised input (biased variance
    over H, W; eps 1e-5) and the standardised per-channel means (unbiased variance over
    the C channels, eps 1e-5).
  """
  x = x.astype(jnp.float32)
  mu = jnp.mean(x, axis=(1, 2), keepdims=True)                         # [B, 1, 1, C]
  centered = x - mu
  var = jnp.mean(jnp.square(centered), axis=(1, 2), keepdims=True)      # biased, as IN
  normed = centered * jax.lax.rsqrt(var + NORM_EPS)
  # The means term: torch.var over the channel axis is the unbiased (C − 1) estimate.
  m = jnp.mean(mu, axis=-1, keepdims=True)
  v = jnp.sum(jnp.square(mu - m), axis=-1, keepdims=True) / (x.shape[-1] - 1)
  means = (mu - m) / jnp.sqrt(v + NORM_EPS)
  return normed, means


class InstanceNormPlus(nn.Module):
  """NCSNv2's unconditional IN++ (``InstanceNorm2dPlus`` with its bias): [B, H, W, C] ->
  same shape and dtype. Parameters ``alpha``, ``gamma`` ~ N(1, 0.02) and ``beta`` = 0,
  each [C]."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    near_one = lambda key, shape: 1.0 + 0.02 * jax.random.normal(key, shape)  # noqa: E731
    alpha = self.param("alpha", near_one, (c,))
    gamma = self.param("gamma", near_one, (c,))
    beta = self.param("beta", nn.initializers.zeros, (c,))
    normed, means = _instance_norm_plus_core(x)
    return (gamma * (normed + means * alpha) + beta).astype(x.dtype)


class CondInstanceNormPlus(nn.Module):
  """NCSN's conditional IN++ (``ConditionalInstanceNorm2dPlus``): [B, H, W, C] and level
  indices [B] -> [B, H, W, C] in x's dtype.

  Parameter ``embed`` [num_classes, 3C]: row y is [γ | α | β] for the official level
  index y (0 = largest σ). Initialised as the official code: γ, α ~ N(1, 0.02), β = 0.
  A y outside [0, num_classes) makes the output NaN.

  Attributes:
    num_classes: number of noise levels L.
  """
  num_classes: int

  @nn.compact
  def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
    c = x.shape[-1]

    def init(key, shape):
      scales = 1.0 + 0.02 * jax.random.normal(key, (shape[0], 2 * c))
      return jnp.concatenate([scales, jnp.zeros((shape[0], c))], axis=-1)
    embed = self.param("embed", init, (self.num_classes, 3 * c))
    # An index outside [0, L) gives NaN rows (loud), not a silently clamped or wrapped
    # level: take's "fill" covers y >= L, and negative y (which take would count from
    # the end) is sent past the end first.
    y = jnp.where(y < 0, self.num_classes, y)
    rows = jnp.take(jnp.asarray(embed), y, axis=0, mode="fill",
                    fill_value=jnp.nan)[:, None, None, :]               # [B, 1, 1, 3C]
    gamma, alpha, beta = rows[..., :c], rows[..., c:2 * c], rows[..., 2 * c:]
    normed, means = _instance_norm_plus_core(x)
    return (gamma * (normed + means * alpha) + beta).astype(x.dtype)


def norm(num_classes: int, name: str):
  """IN++ of either kind as a function ``(x, y) -> x``: NCSN's conditional one when
  ``num_classes`` > 0 (``y`` [B] the official level index), else NCSNv2's (``y`` unused).
  Its parameters sit directly under ``name`` (e.g. ``normalize1/embed``), mirroring the
  official ``normalize1.embed.weight`` / ``normalize1.alpha``."""
  if num_classes:
    return CondInstanceNormPlus(num_classes, name=name)
  module = InstanceNormPlus(name=name)
  return lambda x, y: module(x)


def mean_pool_2x2(x: jax.Array) -> jax.Array:
  """Mean of each 2x2 block: [B, H, W, C] -> [B, H/2, W/2, C] (H, W even)."""
  b, h, w, c = x.shape
  if h % 2 or w % 2:
    raise ValueError(f"mean pooling needs even H and W, got {x.shape}")
  return jnp.mean(x.reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4))


class ConvMeanPool(nn.Module):
  """Convolution, then 2x2 mean pooling (``ConvMeanPool``, default padding):
  [B, H, W, C_in] -> [B, H/2, W/2, features]. The convolution has a bias.

  Attributes:
    features: output channels.
    kernel_size: 3 for the main path, 1 for the shortcut.
    dtype: compute dtype.
  """
  features: int
  kernel_size: int = 3
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return mean_pool_2x2(conv(self.features, "conv", self.dtype, x.shape[-1], self.kernel_size)(x))


class ResidualBlock(nn.Module):
  """Pre-activation residual block (``ConditionalResidualBlock`` / ``ResidualBlock``):

    out = shortcut(x) + conv2(act(norm2(conv1(act(norm1(x))))))

  [B, H, W, C_in] -> [B, H', W', out_dim], H' = H/2 only for a non-dilated ``down``
  block. The layers by case (every convolution 3x3 with a bias unless said):

  * ``down``, no dilation: conv1 C_in -> C_in; conv2 = ConvMeanPool C_in -> out_dim;
    shortcut = ConvMeanPool with a 1x1 kernel.
  * ``down`` with dilation d: conv1 C_in -> C_in, conv2 C_in -> out_dim, shortcut
    C_in -> out_dim, all dilated by d; no down-sampling.
  * not ``down``: conv1 C_in -> out_dim, conv2 out_dim -> out_dim (dilated by d if
    given); identity shortcut (out_dim == C_in in every network here).

  Attributes:
    out_dim: output channels.
    down: the official ``resample='down'``.
    dilation: 0 for none.
    num_classes: > 0 for NCSN's conditional IN++.
    dtype: compute dtype.
  """
  out_dim: int
  down: bool = False
  dilation: int = 0
  num_classes: int = 0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, y: Optional[jax.Array]) -> jax.Array:
    in_dim = x.shape[-1]
    d = self.dilation or 1
    mid = in_dim if self.down else self.out_dim
    h = nn.elu(norm(self.num_classes, "normalize1")(x, y))
    h = conv(mid, "conv1", self.dtype, in_dim, dilation=d)(h)
    h = nn.elu(norm(self.num_classes, "normalize2")(h, y))
    if self.down and not self.dilation:
      h = ConvMeanPool(self.out_dim, 3, self.dtype, name="conv2")(h)
      shortcut = ConvMeanPool(self.out_dim, 1, self.dtype, name="shortcut")(x)
    else:
      h = conv(self.out_dim, "conv2", self.dtype, mid, dilation=d)(h)
      if self.down:
        shortcut = conv(self.out_dim, "shortcut", self.dtype, in_dim, dilation=d)(x)
      elif in_dim != self.out_dim:
        # Not reached by the official networks (each non-down block keeps its width);
        # NCSNv2's code would use a 1x1 convolution here.
        shortcut = conv(self.out_dim, "shortcut", self.dtype, in_dim, kernel_size=1)(x)
      else:
        shortcut = x
    return shortcut + h


class RCUBlock(nn.Module):
  """Residual conv unit (``RCUBlock`` / ``CondRCUBlock``): ``n_blocks`` times
  x <- x + [ (norm) -> ELU -> conv3x3 (no bias) ] x ``n_stages``. Shape-preserving.

  Parameters are named after the official attributes: ``{i}_{j}_conv`` (and, NCSN,
  ``{i}_{j}_norm``), i, j from 1.

  Attributes:
    n_blocks, n_stages: as above.
    num_classes: > 0: NCSN's conditional IN++ before each activation; 0: none (NCSNv2).
    dtype: compute dtype.
  """
  n_blocks: int
  n_stages: int = 2
  num_classes: int = 0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, y: Optional[jax.Array]) -> jax.Array:
    c = x.shape[-1]
    for i in range(1, self.n_blocks + 1):
      residual = x
      for j in range(1, self.n_stages + 1):
        if self.num_classes:
          x = CondInstanceNormPlus(self.num_classes, name=f"{i}_{j}_norm")(x, y)
        x = conv(c, f"{i}_{j}_conv", self.dtype, c, use_bias=False)(nn.elu(x))
      x = x + residual
    return x


def pool_5x5(x: jax.Array, kind: str) -> jax.Array:
  """5x5 stride-1 pooling with 2 pixels of padding: [B, H, W, C] -> same shape.

  ``avg``: sum / 25 with the zero padding counted (``nn.AvgPool2d``'s
  ``count_include_pad=True``); ``max``: padding never selected (``nn.MaxPool2d``)."""
  pad = ((2, 2), (2, 2))
  if kind == "avg":
    return nn.avg_pool(x, (5, 5), strides=(1, 1), padding=pad, count_include_pad=True)
  if kind == "max":
    return nn.max_pool(x, (5, 5), strides=(1, 1), padding=pad)   # pads with −inf
  raise ValueError(f"pool kind must be 'avg' or 'max', got {kind!r}")


class CRPBlock(nn.Module):
  """Chained residual pooling (``CRPBlock`` / ``CondCRPBlock``), shape-preserving:

    x <- ELU(x); path <- x; repeat n_stages: path <- conv(pool((norm) path)); x <- x + path.

  Convolutions 3x3 without bias, named ``convs_{i}`` (norms ``norms_{i}``), i from 0.

  Attributes:
    n_stages: 2 in both networks.
    num_classes: > 0: NCSN (conditional IN++ before each pooling, average pooling);
      0: NCSNv2 (no normalisation, max pooling).
    dtype: compute dtype.
  """
  n_stages: int = 2
  num_classes: int = 0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, y: Optional[jax.Array]) -> jax.Array:
    c = x.shape[-1]
    x = nn.elu(x)
    path = x
    for i in range(self.n_stages):
      if self.num_classes:
        path = CondInstanceNormPlus(self.num_classes, name=f"norms_{i}")(path, y)
      path = pool_5x5(path, "avg" if self.num_classes else "max")
      path = conv(c, f"convs_{i}", self.dtype, c, use_bias=False)(path)
      x = path + x
    return x


def _align_corners_taps(n_in: int, n_out: int):
  """Source indices (lo, hi) [n_out] and weights of hi [n_out] for one axis of an
  align-corners bilinear resize: output i samples i·(n_in − 1)/(n_out − 1)."""
  if n_out == 1:
    pos = np.zeros(1)
  else:
    pos = np.arange(n_out) * ((n_in - 1) / (n_out - 1))
  lo = np.minimum(np.floor(pos).astype(np.int32), n_in - 1)
  hi = np.minimum(lo + 1, n_in - 1)
  return lo, hi, (pos - lo).astype(np.float32)


def resize_bilinear_align_corners(x: jax.Array, size: Sequence[int]) -> jax.Array:
  """Bilinear resize with aligned corners (``F.interpolate(..., mode='bilinear',
  align_corners=True)``): [B, H, W, C] -> [B, size[0], size[1], C].

  Each output is the two-tap interpolation of its neighbours along H, then along W;
  written as gathers and a lerp (not a matrix product) so it is exact to float32
  rounding on every backend. Equal sizes return x unchanged.
  """
  out_h, out_w = int(size[0]), int(size[1])
  if (out_h, out_w) == tuple(x.shape[1:3]):
    return x
  for axis, n_out in ((1, out_h), (2, out_w)):
    lo, hi, w = _align_corners_taps(x.shape[axis], n_out)
    shape = [1, 1, 1, 1]
    shape[axis] = n_out
    w = jnp.asarray(w, x.dtype).reshape(shape)
    a, b = jnp.take(x, lo, axis=axis), jnp.take(x, hi, axis=axis)
    x = a + (b - a) * w
  return x


class MSFBlock(nn.Module):
  """Multi-resolution fusion (``MSFBlock`` / ``CondMSFBlock``): sum over inputs of
  align-corners bilinear resize(conv3x3 with bias((norm) x_i)) to ``shape``.

  xs: list of [B, H_i, W_i, C_i] -> [B, shape[0], shape[1], features]. Convolutions
  ``convs_{i}``, norms (NCSN) ``norms_{i}`` over C_i channels.

  Attributes:
    features: output channels.
    num_classes: > 0 for NCSN's conditional IN++ on each input; 0 for none.
    dtype: compute dtype.
  """
  features: int
  num_classes: int = 0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, xs: Sequence[jax.Array], y: Optional[jax.Array],
               shape: Sequence[int]) -> jax.Array:
    total = None
    for i, x in enumerate(xs):
      if self.num_classes:
        x = CondInstanceNormPlus(self.num_classes, name=f"norms_{i}")(x, y)
      h = conv(self.features, f"convs_{i}", self.dtype, x.shape[-1])(x)
      h = resize_bilinear_align_corners(h, shape)
      total = h if total is None else total + h
    return total


class RefineBlock(nn.Module):
  """RefineNet block (``RefineBlock`` / ``CondRefineBlock``):

    h_i = RCU(2 blocks)(x_i); h = MSF(h_1..h_n) to x_1's size (or h_1 when n = 1);
    h = CRP(h); out = RCU(3 blocks if ``end`` else 1)(h).

  xs: list of [B, H_i, W_i, C_i], the first at the output resolution ->
  [B, H_1, W_1, features]. Submodules ``adapt_convs_{i}``, ``msf`` (n > 1), ``crp``,
  ``output_convs``. With one input its width must equal ``features``.

  Attributes:
    features: output channels.
    end: the last block (3 output RCU blocks).
    num_classes: > 0 for NCSN's conditional normalisation everywhere inside; 0 for NCSNv2.
    dtype: compute dtype.
  """
  features: int
  end: bool = False
  num_classes: int = 0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, xs: Sequence[jax.Array], y: Optional[jax.Array]) -> jax.Array:
    nc = self.num_classes
    hs = [RCUBlock(2, 2, nc, self.dtype, name=f"adapt_convs_{i}")(x, y)
          for i, x in enumerate(xs)]
    if len(hs) > 1:
      h = MSFBlock(self.features, nc, self.dtype, name="msf")(hs, y, hs[0].shape[1:3])
    else:
      h = hs[0]
    h = CRPBlock(2, nc, self.dtype, name="crp")(h, y)
    return RCUBlock(3 if self.end else 1, 2, nc, self.dtype, name="output_convs")(h, y)

"""Building blocks of the DDPM U-Net (Ho et al. 2020), in Flax linen.

Each block follows ``diffusion_tf/models/unet.py`` and ``diffusion_tf/nn.py`` of
hojonathanho/diffusion (DDPM App. B):

* :func:`timestep_embedding`: sinusoidal embedding of a float noise level.
* :class:`Normalize`: GroupNorm(32) with two-pass statistics in float32.
* :class:`ResBlock`: norm1 -> swish -> conv1 (+ Dense(swish(temb))) -> norm2 ->
  swish -> dropout -> conv2 (zero init), plus a 1x1 ``nin`` shortcut when the
  channel count changes.
* :class:`AttnBlock`: single-head self-attention over all H*W positions with
  1x1 q/k/v projections and a zero-initialised output projection.
* :class:`Downsample` / :class:`Upsample`: strided 3x3 conv (or 2x2 average
  pooling) / nearest-neighbour x2 (+ 3x3 conv).

All blocks take NHWC activations ``[B, H, W, C]`` in the compute ``dtype``;
parameters are float32. Initialisation is DDPM's ``default_init(scale)``:
variance scaling with ``fan_avg`` and a uniform distribution, biases zero. The
layers DDPM creates with ``init_scale=0.`` (which the TF code turns into a scale
of 1e-10) are initialised to exact zeros here, so a fresh network outputs 0.
"""

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


def default_init(scale: float = 1.0) -> Callable:
  """DDPM's ``default_init``: variance_scaling(scale, 'fan_avg', 'uniform').

  ``scale == 0`` gives exact zeros (DDPM uses max(scale, 1e-10)).
  """
  if scale == 0.0:
    return nn.initializers.zeros
  return nn.initializers.variance_scaling(scale, "fan_avg", "uniform")


def timestep_embedding(cond: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
  """Sinusoidal embedding of a float noise level (DDPM ``get_timestep_embedding``).

  Args:
    cond: [B] the noise-level input (any float; DDPM passes the index t).
    dim: embedding size; the first half is sin, the second half cos; an odd
      ``dim`` gets one trailing zero.
    max_period: sets the lowest frequency, 1 / max_period.

  Returns:
    [B, dim] float32 with emb[:, i] = sin(cond * f_i), emb[:, half + i] =
    cos(cond * f_i), f_i = exp(-ln(max_period) * i / (half - 1)), i < half.
  """
  half = dim // 2
  if half < 2:
    raise ValueError(f"timestep_embedding needs dim >= 4, got {dim}")
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - 1))
  args = jnp.asarray(cond, jnp.float32)[:, None] * freqs[None, :]
  emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=1)
  if dim % 2 == 1:
    emb = jnp.pad(emb, ((0, 0), (0, 1)))
  return emb


class GroupNorm(nn.Module):
  """GroupNorm with the two-pass variance mean((x − mean)²), in float32.

  Flax's ``nn.GroupNorm`` computes E[x²] − E[x]², which loses the variance to
  cancellation when |mean| >> std (a relative error of 3e-2 in the output at mean/std
  ≈ 100 in float32); subtracting the mean first keeps it exact to rounding. Parameters
  ``scale`` (ones) and ``bias`` (zeros) [C], as Flax's.

  Each group statistic is reduced over the spatial axes first (to [B, C], the
  channel axis staying minor) and then over the group's C/G channels: XLA:CPU runs
  this 3x faster than one reduction over a [B, H, W, G, C/G] view, forward and
  backward (BENCHMARKS.md, GroupNorm); the result is the same to float32 rounding.
  """
  num_groups: int = 32
  epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, c = x.shape[0], x.shape[-1]
    per_group = c // self.num_groups
    spatial = tuple(range(1, x.ndim - 1))
    count = math.prod(x.shape[1:-1]) * per_group        # elements per (example, group)
    stat_shape = (b,) + (1,) * len(spatial) + (c,)

    def group_mean(v):   # [B, ..., C] -> each group's mean, broadcast to [B, 1.., C]
      per_channel = jnp.sum(v, axis=spatial)                                   # [B, C]
      groups = jnp.sum(per_channel.reshape(b, self.num_groups, per_group), -1) / count
      return jnp.repeat(groups, per_group, axis=-1).reshape(stat_shape)

    centered = x - group_mean(x)
    rstd = jax.lax.rsqrt(group_mean(jnp.square(centered)) + self.epsilon)
    scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    return centered * (rstd * scale) + bias


class Normalize(nn.Module):
  """GroupNorm(32 groups, eps 1e-6) computed in float32; returns x's dtype.

  Attributes:
    num_groups: groups; the channel count must be divisible by it.
  """
  num_groups: int = 32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    # Mean/variance over 32-channel groups of bf16 activations lose precision:
    # normalise in float32, then return to the compute dtype.
    y = GroupNorm(num_groups=self.num_groups, epsilon=1e-6,
                  name="group_norm")(x.astype(jnp.float32))
    return y.astype(x.dtype)


def conv(features: int, name: str, dtype: Dtype, kernel: int = 3, stride: int = 1,
          init_scale: float = 1.0) -> nn.Conv:
  """A 'SAME'-padded conv with DDPM's init (TF padding: extra pad on the high side)."""
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding="SAME",
                 kernel_init=default_init(init_scale), bias_init=nn.initializers.zeros,
                 dtype=dtype, param_dtype=jnp.float32, name=name)


def dense(features: int, name: str, dtype: Dtype, init_scale: float = 1.0) -> nn.Dense:
  """Dense / 1x1 ``nin`` layer with DDPM's init."""
  return nn.Dense(features, kernel_init=default_init(init_scale),
                  bias_init=nn.initializers.zeros, dtype=dtype,
                  param_dtype=jnp.float32, name=name)


class ResBlock(nn.Module):
  """DDPM ``resnet_block``: [B, H, W, C_in] -> [B, H, W, out_ch].

  Attributes:
    out_ch: output channels; a 1x1 ``nin_shortcut`` is used when != C_in.
    dropout: rate applied after norm2/swish, before conv2 (training only).
    dtype: compute dtype.
  """
  out_ch: int
  dropout: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, temb: jax.Array | None, train: bool = False) -> jax.Array:
    """x: [B, H, W, C_in]; temb: [B, E] or None (unconditional: no projection)."""
    h = nn.swish(Normalize(name="norm1")(x))
    h = conv(self.out_ch, "conv1", self.dtype)(h)
    if temb is not None:
      h = h + dense(self.out_ch, "temb_proj", self.dtype)(nn.swish(temb))[:, None, None, :]
    h = nn.swish(Normalize(name="norm2")(h))
    if self.dropout > 0.0:
      h = nn.Dropout(rate=self.dropout, deterministic=not train)(h)
    h = conv(self.out_ch, "conv2", self.dtype, init_scale=0.0)(h)
    if x.shape[-1] != self.out_ch:
      x = dense(self.out_ch, "nin_shortcut", self.dtype)(x)
    return x + h


class AttnBlock(nn.Module):
  """DDPM ``attn_block``: single-head self-attention, [B, H, W, C] -> same shape.

  q, k, v and proj_out are 1x1 projections (C -> C); the softmax is over all
  H*W key positions with scale C^-1/2. Computed by ``jax.nn.dot_product_attention``
  (logits and softmax in float32).

  Attributes:
    dtype: compute dtype.
    implementation: passed to ``jax.nn.dot_product_attention`` (None = XLA,
      or 'cudnn' for the fused GPU kernel; needs bf16/fp16 inputs).
  """
  dtype: Dtype = jnp.float32
  implementation: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, hgt, wid, c = x.shape
    h = Normalize(name="norm")(x)
    # [B, H*W, heads=1, C], the layout dot_product_attention expects.
    q, k, v = (dense(c, n, self.dtype)(h).reshape(b, hgt * wid, 1, c) for n in ("q", "k", "v"))
    h = jax.nn.dot_product_attention(q, k, v, implementation=self.implementation)
    h = h.reshape(b, hgt, wid, c)
    h = dense(c, "proj_out", self.dtype, init_scale=0.0)(h)
    return x + h


class Downsample(nn.Module):
  """Halves H and W: 3x3 stride-2 conv (TF 'SAME' padding) or 2x2 average pooling.

  [B, H, W, C] -> [B, H/2, W/2, C] (H, W even).
  """
  with_conv: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.with_conv:
      return conv(x.shape[-1], "conv", self.dtype, stride=2)(x)
    return nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")


class Upsample(nn.Module):
  """Doubles H and W by nearest-neighbour repetition, then an optional 3x3 conv.

  [B, H, W, C] -> [B, 2H, 2W, C].
  """
  with_conv: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    if self.with_conv:
      x = conv(x.shape[-1], "conv", self.dtype)(x)
    return x

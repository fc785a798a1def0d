"""The DDPM U-Net (Ho et al. 2020, App. B; ``diffusion_tf/models/unet.py``).

Layout, for ``ch_mult`` of length L (DDPM App. B; the TF code):

* noise-level embedding: sinusoid(cond, ch) -> Dense(4ch) -> swish -> Dense(4ch);
* ``conv_in`` 3x3 to ``ch`` channels;
* down path, level i: ``num_res_blocks`` ResBlocks to ``ch * ch_mult[i]``
  channels, each followed by an AttnBlock when the resolution is in
  ``attn_resolutions``; a Downsample after every level but the last. Every
  block output (and conv_in's) is kept for a skip connection;
* middle: ResBlock, AttnBlock, ResBlock;
* up path, level i from L-1 to 0: ``num_res_blocks + 1`` ResBlocks, each on the
  concatenation [h, skip], each followed by an AttnBlock at the attention
  resolutions (the TF original, not score_sde's once-per-level variant, which has
  35,218,947 parameters at CIFAR-10 size, not 35,746,307); an Upsample after every
  level but level 0;
* head: GroupNorm -> swish -> ``conv_out`` 3x3 (zero init) to ``out_channels``.

The noise-level input ``cond`` is a float [B]. The model just embeds whatever
float it is given: the glue (``diffusion/model_fn.py``) decides whether that is
the level index t (DDPM, VP) or, for VE, the index or log sigma. With
``conditional=False`` there is no embedding at all (score_sde's
``conditional=False``) and ``cond`` is ignored. Any output scaling such as
NCSNv2's s(x)/sigma is also applied by the glue, not here.

Mixed precision: ``dtype`` is the compute dtype; parameters are float32,
GroupNorm statistics are float32 and the output is cast to float32.
"""

from typing import Any, Mapping, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffusion.errors import ConfigError
from diffusion.models import layers
from diffusion.models.network import (CONDITIONAL, DTYPE, DTYPES, OUT_CHANNELS, Network,
                                      image_side)
from diffusion.options import AT_LEAST_1, HALF_OPEN_UNIT, Option, declare

Dtype = Any


class UNet(nn.Module):
  """DDPM noise-prediction U-Net: x [B, H, W, C], cond [B] -> [B, H, W, out_channels].

  H and W must be divisible by 2**(len(ch_mult) - 1) and ``ch`` by 32 (GroupNorm).

  Attributes:
    ch: base channel count (DDPM CIFAR-10: 128).
    out_channels: output channels (C, or 2C for learned variance).
    ch_mult: channel multiplier per resolution level.
    num_res_blocks: ResBlocks per level in the down path (the up path has one more).
    attn_resolutions: spatial sizes (H) at which self-attention follows each ResBlock.
    dropout: dropout rate inside ResBlocks (training only; rng stream 'dropout').
    resamp_with_conv: conv in Up/Downsample (False: nearest / average pooling only).
    conditional: embed ``cond`` (False: the network ignores the noise level).
    dtype: compute dtype (jnp.float32 or jnp.bfloat16).
    attn_implementation: ``jax.nn.dot_product_attention`` implementation
      (None = XLA; 'cudnn' = fused kernel on GPU for bf16).
  """
  ch: int = 128
  out_channels: int = 3
  ch_mult: Sequence[int] = (1, 2, 2, 2)
  num_res_blocks: int = 2
  attn_resolutions: Sequence[int] = (16,)
  dropout: float = 0.1
  resamp_with_conv: bool = True
  conditional: bool = True
  dtype: Dtype = jnp.float32
  attn_implementation: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, cond: jax.Array | None = None,
               train: bool = False) -> jax.Array:
    """Args:
      x: [B, H, W, C] float noisy images.
      cond: [B] float noise-level input (required when ``conditional``).
      train: enables dropout (then pass rngs={'dropout': key} to apply).

    Returns:
      [B, H, W, out_channels] float32.
    """
    num_levels = len(self.ch_mult)
    if x.shape[1] % 2 ** (num_levels - 1) or x.shape[2] % 2 ** (num_levels - 1):
      raise ValueError(f"UNet input {x.shape}: H and W must be divisible by "
                       f"2**(len(ch_mult)-1) = {2 ** (num_levels - 1)}")
    res_block = lambda out_ch, name: layers.ResBlock(  # noqa: E731
        out_ch, dropout=self.dropout, dtype=self.dtype, name=name)
    attn_block = lambda name: layers.AttnBlock(  # noqa: E731
        dtype=self.dtype, implementation=self.attn_implementation, name=name)

    temb = None
    if self.conditional:
      if cond is None:
        raise ValueError("UNet(conditional=True) needs the noise-level input cond [B]")
      temb = layers.timestep_embedding(cond, self.ch).astype(self.dtype)
      temb = layers.dense(4 * self.ch, "temb_dense0", self.dtype)(temb)
      temb = layers.dense(4 * self.ch, "temb_dense1", self.dtype)(nn.swish(temb))

    # Down path; hs collects every skip connection.
    hs = [layers.conv(self.ch, "conv_in", self.dtype)(x.astype(self.dtype))]
    for i_level, mult in enumerate(self.ch_mult):
      for i_block in range(self.num_res_blocks):
        h = res_block(self.ch * mult, f"down_{i_level}_block_{i_block}")(hs[-1], temb, train)
        if h.shape[1] in self.attn_resolutions:
          h = attn_block(f"down_{i_level}_attn_{i_block}")(h)
        hs.append(h)
      if i_level != num_levels - 1:
        hs.append(layers.Downsample(self.resamp_with_conv, self.dtype,
                                    name=f"down_{i_level}_downsample")(hs[-1]))

    # Middle.
    h = hs[-1]
    h = res_block(h.shape[-1], "mid_block_1")(h, temb, train)
    h = attn_block("mid_attn_1")(h)
    h = res_block(h.shape[-1], "mid_block_2")(h, temb, train)

    # Up path: one more block per level than the down path consumes the extra skip.
    for i_level in reversed(range(num_levels)):
      for i_block in range(self.num_res_blocks + 1):
        h = jnp.concatenate([h, hs.pop()], axis=-1)
        h = res_block(self.ch * self.ch_mult[i_level], f"up_{i_level}_block_{i_block}")(
            h, temb, train)
        if h.shape[1] in self.attn_resolutions:
          h = attn_block(f"up_{i_level}_attn_{i_block}")(h)
      if i_level != 0:
        h = layers.Upsample(self.resamp_with_conv, self.dtype, name=f"up_{i_level}_upsample")(h)
    assert not hs, "every skip connection must be used"

    h = nn.swish(layers.Normalize(name="norm_out")(h))
    h = layers.conv(self.out_channels, "conv_out", self.dtype, init_scale=0.0)(h)
    return h.astype(jnp.float32)


def build(*, ch: int = 128, ch_mult: Tuple[int, ...] = (1, 2, 2, 2), num_res_blocks: int = 2,
          attn_resolutions: Tuple[int, ...] = (16,), dropout: float = 0.1,
          resamp_with_conv: bool = True, out_channels: int = 3, conditional: bool = True,
          dtype: str = "float32") -> UNet:
  """The U-Net of the ``model.*`` options (defaults: DDPM CIFAR-10, 35,746,307 parameters)."""
  return UNet(ch=ch, ch_mult=tuple(ch_mult), num_res_blocks=num_res_blocks,
              attn_resolutions=tuple(attn_resolutions), dropout=dropout,
              resamp_with_conv=resamp_with_conv, out_channels=out_channels,
              conditional=conditional, dtype=DTYPES[dtype])


def check(options: Mapping[str, Any]) -> None:
  """At least one resolution; ``ch`` a multiple of the GroupNorm groups."""
  if not options["ch_mult"]:
    raise ConfigError(f"model.ch_mult={options['ch_mult']!r} is not valid; give one positive "
                      "multiplier per resolution, e.g. (1, 2, 2, 2).")
  groups = layers.Normalize.num_groups
  if options["ch"] % groups:
    raise ConfigError(f"model.ch={options['ch']!r} is not valid; it must be a multiple of "
                      f"{groups} (GroupNorm groups).")


def fits(options: Mapping[str, Any], dataset: str, example_shape: Tuple[int, ...],
         process_kind: Optional[str] = None) -> None:
  """Images whose side the down-sampling divides; attention at resolutions it has."""
  del process_kind
  size = image_side(example_shape)
  if size is None:
    raise ConfigError(f"model.name='unet' needs images, but data.dataset={dataset!r} is "
                      "2-D toy data; use model.name='mlp' (or 'analytic').")
  ch_mult = options["ch_mult"]
  factor = 2 ** (len(ch_mult) - 1)
  if size % factor:
    raise ConfigError(
        f"data.image_size={size} is not divisible by 2^(len(model.ch_mult)-1)="
        f"{factor} for model.ch_mult={ch_mult}; change the image size or use fewer "
        "model.ch_mult levels.")
  resolutions = [size // 2 ** i for i in range(len(ch_mult))]
  for r in options["attn_resolutions"]:
    if r not in resolutions:
      raise ConfigError(
          f"model.attn_resolutions contains {r}, which is not a U-Net resolution; "
          f"choose from {resolutions}.")


NETWORK = Network(
    "the DDPM U-Net (Ho et al. 2020, App. B)", build,
    declare(build, out_channels=OUT_CHANNELS, conditional=CONDITIONAL, dtype=DTYPE,
            ch=Option("base channels (a multiple of 32 for GroupNorm)", rule=AT_LEAST_1),
            ch_mult=Option("channel multiplier per resolution", rule=AT_LEAST_1),
            num_res_blocks=Option("ResBlocks per resolution (down path)", rule=AT_LEAST_1),
            attn_resolutions=Option("resolutions with self-attention", rule=AT_LEAST_1),
            dropout=Option("dropout in the ResBlocks", rule=HALF_OPEN_UNIT),
            resamp_with_conv=Option("convolutions in the up/down-sampling")),
    check, fits)

"""What every weights format maps onto: the DDPM U-Net's sizes and its named parameters.

A release is described by a :class:`UNetSpec` (the sizes of ``diffusion/models/unet.py``);
its weights become our parameter tree leaf by leaf. Our tree is walked as
``{path: leaf}`` where ``path`` joins the keys with "/", such as
``down_1_block_0/norm1/group_norm/scale`` (the flat form of parameter trees); each format module
(:mod:`diffusion.pretrained.diffusers`, :mod:`diffusion.pretrained.ddpm_tf`) names the
tensor of a path in its own file and converts the layout. Walking *our* tree, not the
file, makes "missing", "unknown" and "shape mismatch" one check each.

Our layouts (Flax, NHWC): conv kernel [kh, kw, C_in, C_out]; Dense / 1x1 kernel
[C_in, C_out]; biases [C_out]; GroupNorm scale and bias [C].
"""

import dataclasses
from typing import Any, Dict, Optional, Tuple

import numpy as np

from diffusion import trees
from diffusion.errors import ConfigError

Path = str   # "down_1_block_0/norm1/group_norm/scale"


class WeightsError(ConfigError):
  """A weights file or its config is not a DDPM U-Net we can read (one line)."""


@dataclasses.dataclass(frozen=True)
class UNetSpec:
  """The sizes of a DDPM U-Net release, in our config's terms.

  Attributes:
    image_size: H = W of the images it was trained on.
    in_channels: C of x_t.
    out_channels: C (ε) or 2C (ε and the learned-variance input v).
    ch: base channels (``block_out_channels[0]``).
    ch_mult: channel multiplier per level (``block_out_channels[i] / ch``).
    num_res_blocks: ResBlocks per level on the way down (``layers_per_block``).
    attn_levels: the levels whose blocks are followed by self-attention.
    dropout: the release's dropout rate, when its config says (None: it does not).
  """
  image_size: int
  in_channels: int
  out_channels: int
  ch: int
  ch_mult: Tuple[int, ...]
  num_res_blocks: int
  attn_levels: Tuple[int, ...]
  dropout: Optional[float] = None

  @property
  def num_levels(self) -> int:
    return len(self.ch_mult)

  @property
  def attn_resolutions(self) -> Tuple[int, ...]:
    """The spatial sizes of the attention levels (level i runs at image_size / 2^i)."""
    return tuple(self.image_size // 2 ** i for i in self.attn_levels)

  def model_fields(self) -> Dict[str, Any]:
    """The ``config.model`` fields this release fixes."""
    fields = dict(name="unet", ch=self.ch, ch_mult=self.ch_mult,
                  num_res_blocks=self.num_res_blocks,
                  attn_resolutions=self.attn_resolutions, out_channels=self.out_channels,
                  resamp_with_conv=True, conditional=True, cond="index",
                  scale_by_sigma=False, rescale_inputs=False)
    if self.dropout is not None:
      fields["dropout"] = self.dropout
    return fields


def spec_of_model(model_cfg, data_cfg) -> UNetSpec:
  """The spec of one of our configs (``config.model``, ``config.data``), for export.

  Raises WeightsError naming the field when the network has no counterpart in the
  DDPM family (no noise-level input, average-pool resampling, NCSN's input or output
  scalings, attention at a size no level runs at)."""
  m, d = model_cfg, data_cfg
  for field, value, want in (("model.name", m.name, "unet"), ("model.conditional", m.conditional, True),
                             ("model.resamp_with_conv", m.resamp_with_conv, True),
                             ("model.cond", m.cond, "index"),
                             ("model.scale_by_sigma", m.scale_by_sigma, False),
                             ("model.rescale_inputs", m.rescale_inputs, False)):
    if value != want:
      raise WeightsError(f"{field}={value!r}: only DDPM U-Nets export (it must be {want!r}); "
                         "this network has no UNet2DModel counterpart.")
  sizes = [d.image_size // 2 ** i for i in range(len(m.ch_mult))]
  stray = [r for r in m.attn_resolutions if r not in sizes]
  if stray:
    raise WeightsError(f"model.attn_resolutions={m.attn_resolutions!r}: {stray[0]} is not the "
                       f"size of any level ({sizes}); UNet2DModel places attention by level.")
  return UNetSpec(image_size=d.image_size, in_channels=d.num_channels,
                  out_channels=m.out_channels, ch=m.ch, ch_mult=tuple(m.ch_mult),
                  num_res_blocks=m.num_res_blocks,
                  attn_levels=tuple(i for i, s in enumerate(sizes) if s in m.attn_resolutions),
                  dropout=m.dropout)


# Parameter paths are '/'-joined (diffusion.trees), as in our .npz files.
flatten, unflatten = trees.flatten, trees.unflatten


def check_shape(array: np.ndarray, want: Tuple[int, ...], source: str, name: str,
                ours: Path) -> np.ndarray:
  """``array`` as float32 when its shape is ``want``; else WeightsError naming the tensor."""
  if tuple(array.shape) != tuple(want):
    raise WeightsError(f"{source}: tensor {name} has shape {tuple(array.shape)}, but the "
                       f"network described by the config needs {tuple(want)} for "
                       f"{ours}.")
  if not np.issubdtype(array.dtype, np.floating):
    raise WeightsError(f"{source}: tensor {name} holds {array.dtype}, not floating-point "
                       "weights.")
  out = np.asarray(array, np.float32)
  if not np.all(np.isfinite(out)):
    raise WeightsError(f"{source}: tensor {name} holds NaN or Inf values.")
  return out

"""A noise-conditioned MLP for 2-D toy data (DPM's swiss roll, NCSN's mixture).

x [B, D] and the float noise level cond [B] -> [B, out_channels]. The noise
level enters as in the U-Net (DDPM's sinusoidal embedding, here of size
``hidden_dims[0]``, then Dense -> swish) and is added to every hidden layer
through its own Dense projection:

  h_0 = x;  h_{i+1} = swish(Dense_i(h_i) + Dense'_i(temb));  out = Dense(h_L)

The output layer is zero-initialised (a fresh model predicts eps = 0). As for
the U-Net, the model embeds whatever float it is given (index t or log sigma;
the glue decides) and ``conditional=False`` drops the embedding.
"""

from typing import Any, Mapping, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffusion.errors import ConfigError
from diffusion.models import layers
from diffusion.models.network import (CONDITIONAL, DTYPE, DTYPES, OUT_CHANNELS, Network,
                                      image_side)
from diffusion.options import AT_LEAST_1, Option, declare

Dtype = Any


class MLP(nn.Module):
  """Noise-conditioned MLP: x [B, D], cond [B] -> [B, out_channels] float32.

  Attributes:
    hidden_dims: widths of the hidden layers (at least one).
    out_channels: output size (D, or 2D for learned variance).
    conditional: embed ``cond`` (False: ignore the noise level).
    dtype: compute dtype; parameters are float32.
  """
  hidden_dims: Sequence[int] = (128, 128, 128)
  out_channels: int = 2
  conditional: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, cond: jax.Array | None = None,
               train: bool = False) -> jax.Array:
    """x: [B, D] float; cond: [B] float (required when conditional); train unused."""
    del train  # no dropout; kept for the common module signature
    temb = None
    if self.conditional:
      if cond is None:
        raise ValueError("MLP(conditional=True) needs the noise-level input cond [B]")
      emb_dim = max(int(self.hidden_dims[0]), 4)
      temb = layers.timestep_embedding(cond, emb_dim).astype(self.dtype)
      temb = nn.swish(layers.dense(emb_dim, "temb_dense", self.dtype)(temb))
    h = x.astype(self.dtype)
    for i, width in enumerate(self.hidden_dims):
      h = layers.dense(width, f"dense_{i}", self.dtype)(h)
      if temb is not None:
        h = h + layers.dense(width, f"temb_proj_{i}", self.dtype)(temb)
      h = nn.swish(h)
    h = layers.dense(self.out_channels, "dense_out", self.dtype, init_scale=0.0)(h)
    return h.astype(jnp.float32)


def build(*, hidden_dims: Tuple[int, ...] = (128, 128, 128), out_channels: int = 3,
          conditional: bool = True, dtype: str = "float32") -> MLP:
  """The MLP of the ``model.*`` options (out_channels: D, or 2D for learned variance)."""
  return MLP(hidden_dims=tuple(hidden_dims), out_channels=out_channels,
             conditional=conditional, dtype=DTYPES[dtype])


def check(options: Mapping[str, Any]) -> None:
  if not options["hidden_dims"]:
    raise ConfigError(f"model.hidden_dims={options['hidden_dims']!r} is not valid; give at "
                      "least one hidden width.")


def fits(options: Mapping[str, Any], dataset: str, example_shape: Tuple[int, ...],
         process_kind: Optional[str] = None) -> None:
  """Points, not images."""
  del options, process_kind
  if image_side(example_shape) is not None:
    raise ConfigError(f"model.name='mlp' is for 2-D toy data, but data.dataset={dataset!r}"
                      " is an image set; use model.name='unet'.")


NETWORK = Network(
    "a noise-conditioned MLP for 2-D toy data", build,
    declare(build, out_channels=OUT_CHANNELS, conditional=CONDITIONAL, dtype=DTYPE,
            hidden_dims=Option("hidden widths", rule=AT_LEAST_1)),
    check, fits, convolutional=False)

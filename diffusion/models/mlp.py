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

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffusion.models import layers

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

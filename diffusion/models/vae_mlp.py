"""The variational autoencoder's networks (Kingma & Welling 2013, App. C.2): MLPs.

  encoder  q(z|x) = N(μ(x), diag σ²(x)):  x [B, H, W, C] -> flatten -> Dense -> act -> ...
                                          -> Dense(2L) = [μ, log σ²]
  decoder  p(x|z) = Bernoulli(sigmoid(ℓ(z))): z [B, L] -> Dense -> act -> ... -> Dense(D)
                                          = logits ℓ, reshaped to x's shape

The decoder mirrors the encoder's hidden widths. Computation runs in ``dtype``
(float32 or bfloat16) with float32 parameters, and both outputs are float32 (the
log-variance and logits feed exponentials and log-sigmoids). The ELBO, the
reparameterization and the importance-weighted bound are in :mod:`diffusion.families.vae`.
"""

from typing import Any, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffusion.models import layers

Dtype = Any
ACTIVATIONS = {"relu": nn.relu, "swish": nn.swish, "tanh": jnp.tanh}


class VAE(nn.Module):
  """Gaussian encoder and Bernoulli decoder; ``__call__`` is ``encode`` (for ``init``).

  Attributes:
    data_shape: one example's shape, e.g. (28, 28, 1); D = its product.
    latent_dim: L.
    hidden_dims: encoder widths (the decoder uses them reversed).
    activation: relu | swish | tanh.
    dtype: compute dtype.
  """
  data_shape: Tuple[int, ...]
  latent_dim: int = 128
  hidden_dims: Sequence[int] = (256, 256)
  activation: str = "relu"
  dtype: Dtype = jnp.float32

  def setup(self):
    act = ACTIVATIONS[self.activation]
    self._act = act
    self.enc = [layers.dense(w, f"enc_{i}", self.dtype) for i, w in enumerate(self.hidden_dims)]
    self.enc_out = layers.dense(2 * self.latent_dim, "enc_out", self.dtype)
    self.dec = [layers.dense(w, f"dec_{i}", self.dtype)
                for i, w in enumerate(reversed(self.hidden_dims))]
    size = 1
    for s in self.data_shape:
      size *= s
    self.dec_out = layers.dense(size, "dec_out", self.dtype)

  def encode(self, x: jax.Array) -> Tuple[jax.Array, jax.Array]:
    """x [B, *data_shape] in [0, 1] -> (μ [B, L], log σ² [B, L]) float32."""
    h = x.reshape(x.shape[0], -1).astype(self.dtype)
    for layer in self.enc:
      h = self._act(layer(h))
    out = self.enc_out(h).astype(jnp.float32)
    return out[:, :self.latent_dim], out[:, self.latent_dim:]

  def decode(self, z: jax.Array) -> jax.Array:
    """z [..., L] -> Bernoulli logits [..., *data_shape] float32."""
    lead = z.shape[:-1]
    h = z.reshape(-1, self.latent_dim).astype(self.dtype)
    for layer in self.dec:
      h = self._act(layer(h))
    return self.dec_out(h).astype(jnp.float32).reshape(*lead, *self.data_shape)

  def __call__(self, x: jax.Array) -> Tuple[jax.Array, jax.Array]:
    mean, log_var = self.encode(x)
    self.decode(mean)   # touches the decoder so that init creates its parameters
    return mean, log_var

"""The VAE's pictures: reconstructions beside their inputs, samples from the prior, and
for a 2-D latent the decoded manifold and the test set's latent means by class.

  reconstructions.png  rows of pairs: a test image (binarized as evaluated), then the
                       decoded mean of its encoding μ(x)
  prior_samples.png    decoded means of z ~ N(0, I)
  manifold.png         (latent_dim = 2) decoded means over a 20 x 20 grid of latent
                       quantiles Φ⁻¹(0.05 .. 0.95) (Kingma & Welling 2013, Fig. 4)
  latents.png          (latent_dim = 2) μ(x) of every scored test image, coloured by class
"""

import os
import statistics
from typing import List

import jax
import jax.numpy as jnp
import numpy as np

from diffusion.io import images
from diffusion.data import fixed_binarization, make_source, to_uint8


def write_pictures(family, params, out_dir: str, key: jax.Array, num: int = 64) -> List[str]:
  """Writes the pictures of a trained VAE into ``out_dir``; returns their paths."""
  os.makedirs(out_dir, exist_ok=True)
  data = family.config.data
  source = make_source(data, split=data.eval_split)
  raw = source.arrays["images"]
  x = (fixed_binarization(raw, data.binarize_seed) if data.binarize != "none"
       else raw.astype(np.float32) / 255.0)
  encode, decode = jax.jit(family.encoder(params)), jax.jit(family.decoder(params))
  written = []

  def save(name, pixels, ncols=None):
    path = os.path.join(out_dir, name)
    images.save_grid(path, to_uint8(np.asarray(pixels), centered=False), ncols=ncols)
    written.append(path)

  mean, _ = encode(jnp.asarray(x[:num // 2]))
  recon = jax.nn.sigmoid(decode(mean))
  pairs = np.stack([x[:num // 2], np.asarray(recon)], axis=1).reshape(-1, *x.shape[1:])
  save("reconstructions.png", pairs, ncols=16)
  save("prior_samples.png", family.sample_fn(num)(params, key))

  if family.config.model.latent_dim == 2:
    # Φ⁻¹ of the standard normal in float64 (the standard library's: scipy.stats would
    # load with every family, ~1 s).
    q = np.array([statistics.NormalDist().inv_cdf(p) for p in np.linspace(0.05, 0.95, 20)])
    grid = np.stack(np.meshgrid(q, q[::-1]), axis=-1).reshape(-1, 2)   # rows: z2 downwards
    save("manifold.png", jax.nn.sigmoid(decode(jnp.asarray(grid, jnp.float32))), ncols=20)
    means = np.concatenate([np.asarray(encode(jnp.asarray(x[i:i + 500]))[0])
                            for i in range(0, len(x), 500)])
    written.append(_scatter(os.path.join(out_dir, "latents.png"), means,
                            source.arrays.get("labels")))
  return written


def _scatter(path: str, means: np.ndarray, labels) -> str:
  # matplotlib takes ~1.5 s to import; only this picture needs it (the plots extra).
  from diffusion import extras  # pylint: disable=import-outside-toplevel
  extras.require("matplotlib")
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, ax = plt.subplots(figsize=(6, 5))
  colour = labels[:len(means)] if labels is not None else None
  points = ax.scatter(means[:, 0], means[:, 1], c=colour, cmap="tab10", s=3)
  if colour is not None:
    fig.colorbar(points, ax=ax, ticks=range(10), label="class")
  ax.set(xlabel="z1 (mean of q)", ylabel="z2", title="test images in the latent space")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path

"""Model families: the only place where a typed config becomes constructor arguments.

A family turns a whole parsed config into what the loop, ``generate`` (``sample.py``)
and the evaluators need: ``init_params(key)``, ``loss_fn(params, batch, key, hparams)``,
``sample_fn(num)`` and ``to_uint8(samples)``; and it answers what they would otherwise
ask by name: ``trainable``, ``sampling_record()`` and ``write_extras(...)``.

  diffusion.py        DPM, NCSN, DDPM: process + network + loss + sampler
  vae.py              the variational autoencoder (ELBO / IWAE)
  vae_pictures.py     the VAE's reconstructions and latent manifold
  sampling_record.py  how a family's samples were drawn, in sample.py's words
"""

from typing import Callable, Optional

import jax
import numpy as np

from diffusion.config import DiffusionRunConfig, VAERunConfig, parse_config
from diffusion.families.diffusion import DiffusionFamily
from diffusion.families.vae import VAEFamily

# Plain dict, a whole config's class -> its family (config.RUN_CONFIGS names the classes).
FAMILIES = {DiffusionRunConfig: DiffusionFamily, VAERunConfig: VAEFamily}


def make_family(config):
  """The model family of a whole config (ConfigDict, dict or typed)."""
  config = parse_config(config)
  return FAMILIES[type(config)](config)


def draw(sample_fn: Callable, params, num: int, batch: int, key: jax.Array,
         on_chunk: Optional[Callable[[int], None]] = None) -> np.ndarray:
  """``num`` samples from a ``sample_fn`` of ``batch`` per call, as host numpy.

  Call i uses ``fold_in(key, i)``, so the first n samples do not depend on ``num``.
  ``on_chunk(count)`` is called after each call (e.g. a progress bar).
  """
  chunks = []
  for i in range(-(-int(num) // int(batch))):
    chunks.append(np.asarray(sample_fn(params, jax.random.fold_in(key, i))))
    if on_chunk is not None:
      on_chunk(min(batch, num - i * batch))
  return np.concatenate(chunks)[:num]

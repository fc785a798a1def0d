"""A VAE on scikit-learn's 8x8 digits, dynamically binarized (no download).

The MNIST recipe (configs/vae/mnist.py) at quickstart size: MLPs 64-128-128-(2x16),
the single-sample ELBO, Adam 1e-3 with a cosine decay, 5,000 steps of 128. Set
--config.model.latent_dim=2 to draw the latent manifold and the test latents.
"""

from configs import base
from diffusion.sweeps import product, sweep


def get_config():
  config = base.get_config("vae")
  config.data.dataset = "digits"
  config.data.image_size = 8
  config.data.num_channels = 1
  config.model.latent_dim = 16
  config.model.hidden_dims = (128, 128)
  config.optim.decay_steps = 5000
  config.training.num_train_steps = 5000
  config.training.batch_size = 128
  config.training.steps_per_call = 10
  config.training.log_every = 500
  config.training.checkpoint_every = 1000
  config.training.sample_every = 5000
  config.eval.elbo.every = 5000
  config.eval.elbo.num_examples = 297
  config.eval.elbo.iw_samples = 1000
  return config


def sweep_lr_kl():
  """Learning rate x KL weight (6 points, one population under --sweep_mode=vmap)."""
  return product(sweep("optim.lr", [3e-4, 1e-3, 3e-3]), sweep("vae.kl_weight", [1.0, 2.0]))

"""DPM on scikit-learn's 8x8 digits: the DPM recipe at quickstart size (no download).

VP process with the DPM code's fixed schedule (T=1000), a reverse process with
learned mean and variance trained on the variational bound (loss='kl', DDPM's
discretized decoder at t=0), the quickstart's small U-Net with 2 output
channels, ancestral sampling with the learned variance.
"""

from diffusion.sweeps import product, sweep
from configs import base
from configs.ddpm import digits


def get_config():
  config = base.get_config("dpm")
  config.data = digits.get_config().data
  config.model = digits.get_config().model
  config.model.out_channels = 2
  config.optim.lr = 1e-3
  config.optim.warmup_steps = 200
  config.training = digits.get_config().training
  # Grids with config.sampling: the learned-variance ancestral chain, DPM's own sampler.
  config.training.grid_method = ""
  config.sampling.batch_size = 64
  return config


def sweep_lr_ema():
  """Learning rate x EMA decay, 6 points, for the bound-trained DPM."""
  return product(sweep("optim.lr", [5e-4, 1e-3, 2e-3]), sweep("training.ema_decay", [0.99, 0.999]))

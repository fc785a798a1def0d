"""NCSN on scikit-learn's 8x8 digits: the NCSN recipe at quickstart size (no download).

VE process with geometric sigma 1 -> 0.01 over L=10 levels, DSM with
lambda(sigma)=sigma^2, data in [0, 1] uniformly dequantized, Adam 1e-3, no EMA
(NCSN §4.2 and its code's configs/anneal.yml); annealed Langevin from U[0, 1] with 100 steps
per level and epsilon=2e-5 in the NCSN code's convention. The network is the
quickstart's small U-Net conditioned on the sigma index.
"""

from configs import base
from configs.ddpm import digits


def get_config():
  config = base.get_config("ncsn")
  config.data = digits.get_config().data
  config.data.centered = False
  config.data.uniform_dequantization = True
  config.model = digits.get_config().model
  config.optim.lr = 1e-3
  config.optim.warmup_steps = 0
  config.optim.grad_clip = 0.0
  config.training = digits.get_config().training
  config.training.ema_decay = 0.0
  config.sampling.init = "uniform"
  config.sampling.batch_size = 64
  return config

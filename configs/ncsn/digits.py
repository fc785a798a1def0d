"""NCSN on scikit-learn's 8x8 digits: the NCSN recipe at quickstart size (no download).

VE process with geometric sigma 1 -> 0.01 over L=10 levels, DSM with
lambda(sigma)=sigma^2, data in [0, 1] uniformly dequantized, Adam 1e-3, no EMA
(NCSN §4.2 and its code's configs/anneal.yml); annealed Langevin from U[0, 1] with 100 steps
per level and epsilon=2e-5 in the NCSN code's convention. The network is the
quickstart's small U-Net conditioned on the sigma index.
"""

from diffusion.sweeps import product, sweep
from configs import base
from configs.ddpm import digits


def get_config():
  config = base.get_config("ncsn")
  config.data = digits.get_config().data
  config.data.centered = False
  config.data.uniform_dequantization = True
  config.model = digits.get_config().model
  config.model.rescale_inputs = True   # NCSN codes: the network sees 2x - 1, no dropout
  config.model.dropout = 0.0
  config.optim.lr = 1e-3
  config.optim.warmup_steps = 0
  config.optim.grad_clip = 0.0
  config.training = digits.get_config().training
  # Grids with config.sampling: annealed Langevin, NCSN's own sampler.
  config.training.grid_method = ""
  config.training.ema_decay = 0.0
  config.sampling.init = "uniform"
  config.sampling.batch_size = 64
  return config


def sweep_sigmas():
  """sigma_max x L, 6 points: NCSN's noise ladder (NCSNv2 techniques 1-2 pick both from
  the data; here around the paper's sigma_max = 1, L = 10)."""
  return product(sweep("diffusion.sigma_max", [1.0, 2.0, 4.0]),
                 sweep("diffusion.num_timesteps", [10, 20]))

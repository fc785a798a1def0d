"""DPM on the 2-D swiss roll (Sohl-Dickstein et al. 2015, App. D.1.1, Table 1).

T=40 steps of the DPM code's fixed schedule, a reverse process with learned
mean and variance trained on the variational bound (diffusion.loss='kl', a
Gaussian density at t = 0), here with a small MLP in place of the paper's per-t
RBF readout. Data: swiss_roll_unit, z-scored to variance 1 as the paper's Table 1
says (its generator is not published: see diffusion/data/toy.py). Paper: K = 2.35
bits (K - L_null = 6.45 bits) on its roll; `python -m diffusion.reproduce
dpm_swiss_roll` prints ours beside the exact log-likelihood of our data.
"""

from diffusion.sweeps import product, sweep
from configs import base


def get_config():
  config = base.get_config("dpm")
  config.data.dataset = "swiss_roll_unit"
  config.data.num_channels = 2
  config.data.image_size = 1
  config.data.uniform_dequantization = False
  config.data.random_flip = False
  config.diffusion.num_timesteps = 40
  config.diffusion.decoder = "gaussian"   # continuous 2-D points: a density at t=0
  config.model.name = "mlp"
  config.model.hidden_dims = (128, 128, 128)
  config.model.out_channels = 4
  config.model.dropout = 0.0
  config.optim.lr = 1e-3
  config.optim.warmup_steps = 100
  config.training.batch_size = 256
  config.training.num_train_steps = 20_000
  config.training.ema_decay = 0.999
  config.training.log_every = 500
  config.training.checkpoint_every = 5000
  config.training.sample_every = 0
  config.training.num_samples = 1024
  config.sampling.clip_x0 = False
  return config


def sweep_lr_seed():
  """3 learning rates x 2 seeds (6 points, one population under --sweep_mode=vmap)."""
  return product(sweep("optim.lr", [3e-4, 1e-3, 3e-3]), sweep("training.seed", [0, 1]))


def sweep_timesteps():
  """T = 20, 40 (the paper's), 80: how the bound K depends on the chain's length."""
  return sweep("diffusion.num_timesteps", [20, 40, 80])

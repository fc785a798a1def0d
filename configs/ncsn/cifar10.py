"""NCSN on CIFAR-10 (Song & Ermon 2019) with the paper's conditional RefineNet.

NCSN §4.2 and the ncsn code's configs/anneal.yml: VE process, geometric sigma 1 -> 0.01 with L=10
levels; denoising score matching with lambda(sigma)=sigma^2 (implemented as the
equivalent eps-MSE); data in [0, 1] with uniform dequantization and random
flips; Adam 1e-3, no warm-up, no clipping, batch 128, no EMA, 200k iterations;
annealed Langevin sampling from U[0, 1] with 100 steps per level and
epsilon=2e-5 in the NCSN code's convention (x + a*s + sqrt(2a) z).

Network: the official code's CondRefineNetDilated (model.name='ncsn', ngf 128, conditional
instance norm++ on the level, 30,117,635 parameters; diffusion/models/refinenet.py); its
output is the score, read as eps = -sigma * s. The DDPM U-Net stays available
(--config.model.name=unet --config.model.scale_by_sigma=False). Paper: FID 25.32,
IS 8.87 +- 0.12.
"""

from configs import base


def get_config():
  config = base.get_config("ncsn")
  config.diffusion.sigma_min = 0.01
  config.diffusion.sigma_max = 1.0
  config.diffusion.num_timesteps = 10
  config.data.dataset = "cifar10"
  config.data.random_flip = True
  config.model.name = "ncsn"
  config.model.ngf = 128
  config.model.out_channels = 3
  config.optim.lr = 1e-3
  config.optim.warmup_steps = 0
  config.optim.grad_clip = 0.0
  config.training.num_train_steps = 200_000
  config.training.ema_decay = 0.0
  config.sampling.init = "uniform"
  config.sampling.n_steps_each = 100
  config.sampling.step_size = 2e-5
  config.sampling.denoise = False
  return config

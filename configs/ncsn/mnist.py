"""NCSN on MNIST (Song & Ermon 2019, ncsn configs/anneal.yml) with a small U-Net.

VE process with geometric sigma 1 -> 0.01 over L=10 levels, DSM with
lambda(sigma)=sigma^2, data in [0, 1] uniformly dequantized, no flips, Adam
1e-3, batch 128, 200k iterations, no EMA; annealed Langevin, 100 steps per
level, epsilon=2e-5, init U[0, 1]. The paper reports MNIST samples only (no
metric). Needs prepared tfds data (see configs/ddpm/mnist.py).
"""

from configs import base


def get_config():
  config = base.get_config("ncsn")
  config.data.dataset = "mnist"
  config.data.image_size = 32
  config.data.num_channels = 1
  config.data.random_flip = False
  config.model.ch = 64
  config.model.ch_mult = (1, 2, 2)
  config.model.attn_resolutions = (16,)
  config.model.out_channels = 1
  config.optim.lr = 1e-3
  config.optim.warmup_steps = 0
  config.optim.grad_clip = 0.0
  config.training.num_train_steps = 200_000
  config.training.ema_decay = 0.0
  config.sampling.init = "uniform"
  return config

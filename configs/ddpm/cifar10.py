"""DDPM on CIFAR-10 (Ho et al. 2020), the paper's L_simple model.

DDPM §4 and App. B, and its code's run_cifar.py: T=1000, linear beta 1e-4 -> 0.02, eps-prediction with
L_simple, fixedlarge ancestral sampling; U-Net ch 128, ch_mult (1,2,2,2), 2 res
blocks, attention at 16x16, dropout 0.1 (35,746,307 parameters); Adam 2e-4 with
5000 warm-up steps, grad-clip 1, batch 128, EMA 0.9999, random flips, 800k steps.

Expected (DDPM Table 1): FID 3.17, IS 9.46 +- 0.11 (50k samples vs the training
set), NLL <= 3.75 bits/dim on the test set.
"""

from configs import base


def get_config():
  config = base.get_config("ddpm")
  config.data.dataset = "cifar10"
  config.data.image_size = 32
  config.data.num_channels = 3
  config.data.random_flip = True
  config.model.out_channels = 3
  config.training.num_train_steps = 800_000
  config.training.batch_size = 128
  config.training.ema_decay = 0.9999
  return config

"""DPM on CIFAR-10 (Sohl-Dickstein et al. 2015) with the DDPM U-Net.

DPM §2 and App. D, and its code (model.py, train.py): Gaussian forward diffusion with the DPM code's fixed
schedule (beta_t = 1e-6 + (1/(T-t+1))(1 - 1e-6 - 1e-5), beta_1 += 0.001,
T=1000), a reverse process with learned mean and variance trained on the
variational bound (diffusion.loss='kl': T * L_t in bits/dim, learned variance
interpolated in log space). The paper trained on uniformly dequantized data;
our bound scores the 8-bit pixels with DDPM's discretized decoder instead (so
it is in DDPM's bits/dim). The paper's network is
a multi-scale conv + dense net with temporal bump functions; we use the DDPM
U-Net with 2C outputs. Optimiser from the DPM code: RMSProp lr 1e-3 decayed by
0.1 per 1000 "epochs" of 500 batches (floored at 1e-4), batch 200.

Paper: <= 5.40 bits/dim on CIFAR-10 (as quoted in DDPM Table 1).
"""

from configs import base


def get_config():
  config = base.get_config("dpm")
  config.data.dataset = "cifar10"
  config.model.out_channels = 6
  config.optim.optimizer = "rmsprop"
  config.optim.lr = 1e-3
  config.optim.beta2 = 0.9       # Blocks' RMSProp default decay rate
  config.optim.lr_schedule = "exponential"
  config.optim.decay_steps = 500_000
  config.optim.decay_rate = 0.1
  config.optim.min_lr = 1e-4
  config.optim.warmup_steps = 0
  config.training.batch_size = 200
  config.training.num_train_steps = 1_000_000
  config.training.ema_decay = 0.0
  return config

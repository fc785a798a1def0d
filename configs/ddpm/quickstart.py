"""The README's first command: DDPM on the built-in 8x8 digits in about three minutes on 2 CPU cores.

configs/ddpm/digits.py shrunk for a first look: the same data and DDPM process (linear
beta 1e-4 -> 0.02, T = 1000, L_simple), a smaller U-Net (ch 32, ch_mult (1, 2), one
ResBlock per resolution, no attention: 651,041 parameters), batch 32, 1,200 steps at a
higher learning rate with a faster EMA, and the sample grid drawn with DDIM (eta = 0, 50
steps; Song et al. 2020) instead of 1,000 ancestral steps. Measured (BENCHMARKS.md): the
wall time from the command to the grid, and the share of samples the digits classifier
assigns confidently, beside the same share for real test digits.
"""

from configs.ddpm import digits


def get_config():
  config = digits.get_config()
  config.model.num_res_blocks = 1
  config.model.attn_resolutions = ()
  config.optim.lr = 2e-3
  config.optim.warmup_steps = 100
  config.training.batch_size = 32
  config.training.num_train_steps = 1200
  config.training.ema_decay = 0.995
  config.training.checkpoint_every = 600
  config.training.sample_every = 1200
  config.sampling.method = "ddim"
  config.sampling.num_steps = 50
  config.sampling.eta = 0.0
  return config

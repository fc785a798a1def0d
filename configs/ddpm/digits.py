"""Quickstart: DDPM on scikit-learn's 8x8 handwritten digits (no download).

1,797 real 8x8 grey-scale digits ship inside scikit-learn; they are held on the
device as uint8 and each batch is drawn, flipped-free (digits are not mirror
symmetric) and scaled to [-1, 1] inside the compiled step. DDPM as in the paper
(linear beta 1e-4 -> 0.02, T=1000, L_simple, fixedlarge ancestral sampling) with
a small U-Net (ch 32, ch_mult (1, 2), attention at 4x4, 1.0M parameters) sized so that training
on 2 CPU cores gives recognisable digits in about ten minutes.
"""

from diffusion.sweeps import choice, loguniform, product, randint, sweep
from configs import base


def get_config():
  config = base.get_config("ddpm")
  config.data.dataset = "digits"
  config.data.image_size = 8
  config.data.num_channels = 1
  config.data.random_flip = False
  config.model.ch = 32
  config.model.ch_mult = (1, 2)
  config.model.num_res_blocks = 2
  config.model.attn_resolutions = (4,)
  config.model.dropout = 0.0
  config.model.out_channels = 1
  config.optim.lr = 1e-3
  config.optim.warmup_steps = 200
  config.training.batch_size = 64
  config.training.num_train_steps = 4000
  config.training.ema_decay = 0.999
  config.training.log_every = 100
  config.training.checkpoint_every = 1000
  config.training.sample_every = 2000
  config.training.num_samples = 64
  config.sampling.batch_size = 64
  return config


def sweep_lr_ema():
  """Learning rate x EMA decay, 8 points: the two knobs that decide a short run.

  All 8 differ only in population fields, so --sweep_mode=vmap trains them as one
  population.
  """
  return product(sweep("optim.lr", [2.5e-4, 5e-4, 1e-3, 2e-3]),
                 sweep("training.ema_decay", [0.99, 0.999]))


def sweep_schedule():
  """DDPM's beta schedules and Improved DDPM's cosine at T = 1000 (4 points)."""
  return sweep("diffusion.schedule", ["linear", "quad", "warmup50", "cosine"])


def search_lr_ema():
  """The lr x EMA question of sweep_lr_ema as a search (train.py --search=lr_ema): the
  learning rate on a log scale over the grid's range and beyond, the EMA decay, and the
  warm-up; judged by the held-out loss (none of these changes what the loss measures)."""
  return {"optim.lr": loguniform(1e-4, 4e-3), "training.ema_decay": choice([0.99, 0.995, 0.999]),
          "optim.warmup_steps": randint(0, 500)}

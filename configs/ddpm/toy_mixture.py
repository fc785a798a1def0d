"""DDPM on NCSN's 2-D toy mixture (0.8 N((5,5), I) + 0.2 N((-5,-5), I)).

A small MLP epsilon-model on 2-D data: trains in a minute on a CPU, and the
sample scatter (samples/step_*.npy) shows whether the 4:1 mode weights are
recovered. Used by the test suite for fast end-to-end checks of the loop.
"""

from diffusion.sweeps import choice, loguniform, product, sweep
from configs import base


def get_config():
  config = base.get_config("ddpm")
  config.data.dataset = "mixture"
  config.data.num_channels = 2       # the data dimension for 2-D sets
  config.data.image_size = 1         # unused for 2-D data
  config.data.centered = True
  config.data.random_flip = False
  # Data at +-5 must be fully noised: the cosine schedule ends at alpha_bar ~ 0.
  config.diffusion.schedule = "cosine"
  config.diffusion.num_timesteps = 100
  config.model.name = "mlp"
  config.model.hidden_dims = (32, 32)
  config.model.out_channels = 2
  config.model.dropout = 0.0
  config.optim.lr = 1e-3
  config.optim.warmup_steps = 5
  config.training.batch_size = 16
  config.training.num_train_steps = 2000
  config.training.ema_decay = 0.9
  config.training.log_every = 100
  config.training.checkpoint_every = 500
  config.training.sample_every = 0
  config.sampling.clip_x0 = False
  config.diffusion.clip_x0 = False
  return config


def sweep_lr_seed():
  """4 learning rates x 2 seeds (8 points, one population under --sweep_mode=vmap)."""
  return product(sweep("optim.lr", [2.5e-4, 5e-4, 1e-3, 2e-3]), sweep("training.seed", [0, 1]))


def sweep_schedule():
  """Schedules that fully noise the data at T = 100 (cosine; T-scaled linear)."""
  return sweep("diffusion.schedule", ["cosine", "scaled_linear"])


def search_lr_ema():
  """Learning rate (log scale) and EMA decay as a search (train.py --search=lr_ema); all
  population fields, so a vmapped population can train the trials together."""
  return {"optim.lr": loguniform(1e-4, 1e-2), "training.ema_decay": choice([0.5, 0.9, 0.99])}

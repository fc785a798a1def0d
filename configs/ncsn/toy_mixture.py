"""NCSN on its 2-D toy mixture (Song & Ermon 2019, Figs. 2-3).

p = 0.8 N((5,5), I) + 0.2 N((-5,-5), I); VE ladder sigma 1 -> 20 over 10
geometric levels as in the NCSN toy runner; a small MLP score model trained by
DSM; annealed Langevin with 100 steps per level, epsilon=0.1 in the paper's
form, init U[-8, 8]^2 is approximated by the VE prior N(0, 20^2 I).
The exact-score version of Fig. 3 (no training) is tests/samplers/test_langevin.py:
annealed Langevin puts ~0.785 of the samples in the heavy mode (true 0.8),
plain Langevin ~0.51.
"""

from diffusion.sweeps import product, sweep
from configs import base


def get_config():
  config = base.get_config("ncsn")
  config.data.dataset = "mixture"
  config.data.num_channels = 2
  config.data.image_size = 1
  config.data.centered = True
  config.data.uniform_dequantization = False
  config.data.random_flip = False
  config.diffusion.sigma_min = 1.0
  config.diffusion.sigma_max = 20.0
  config.diffusion.num_timesteps = 10
  config.model.name = "mlp"
  config.model.hidden_dims = (128, 128)
  config.model.out_channels = 2
  config.model.dropout = 0.0
  config.model.rescale_inputs = False   # the toy runner feeds the raw points
  config.optim.lr = 1e-3
  config.optim.warmup_steps = 0
  config.optim.grad_clip = 0.0
  config.training.batch_size = 128
  config.training.num_train_steps = 5000
  config.training.ema_decay = 0.0
  config.training.log_every = 500
  config.training.checkpoint_every = 5000
  config.training.sample_every = 0
  config.training.num_samples = 1280
  config.sampling.step_size = 0.1
  config.sampling.langevin_form = "paper"
  config.sampling.clip_x0 = False
  return config


def sweep_sigmas():
  """sigma_max x L, 6 points: how large the top level must be for annealed Langevin to
  recover the 4:1 mode weights (NCSN Fig. 3 uses 20 and 10)."""
  return product(sweep("diffusion.sigma_max", [10.0, 20.0, 40.0]),
                 sweep("diffusion.num_timesteps", [5, 10]))

"""NCSNv2 on LSUN bedroom (Song & Ermon 2020, ncsnv2 configs/bedroom.yml).

Technique 1 gives sigma_1 = 190.0 (the largest pairwise distance of the training set),
technique 2 L = 1086 geometric levels down to 0.01, technique 3 the output h read as
s = h/sigma, technique 4 3 Langevin steps per level with epsilon = 1.8e-6, technique 5 EMA
0.999, then the final denoising step. Network: NCSNv2Deeper (ngf 128, 83,445,379 parameters,
diffusion/models/refinenet.py). Adam 1e-4, batch 128, 150000 iterations, data in
[0, 1] at 128 px, random flips.
"""

from configs import base


def get_config():
  config = base.get_config("ncsn")
  config.diffusion.sigma_min = 0.01
  config.diffusion.sigma_max = 190.0
  config.diffusion.num_timesteps = 1086
  config.data.dataset = "lsun/bedroom"
  config.data.image_size = 128
  config.data.num_channels = 3
  config.data.uniform_dequantization = False
  config.data.random_flip = True
  config.model.name = "ncsnv2_deeper"
  config.model.ngf = 128
  config.model.out_channels = 3
  config.model.scale_by_sigma = True
  config.model.conditional = False
  config.optim.lr = 1e-4
  config.optim.eps = 1e-8
  config.optim.warmup_steps = 0
  config.optim.grad_clip = 0.0
  config.training.batch_size = 128
  config.training.num_train_steps = 150000
  config.training.ema_decay = 0.999
  config.sampling.init = "uniform"
  config.sampling.n_steps_each = 3
  config.sampling.step_size = 1.8e-6
  config.sampling.denoise = True
  return config

"""NCSNv2 on CelebA 64 px (Song & Ermon 2020, ncsnv2 configs/celeba.yml).

Technique 1 gives sigma_1 = 90.0 (the largest pairwise distance of the training set),
technique 2 L = 500 geometric levels down to 0.01, technique 3 the output h read as
s = h/sigma, technique 4 5 Langevin steps per level with epsilon = 3.3e-6, technique 5 EMA
0.999, then the final denoising step. Network: the official NCSNv2 class (ngf 128, 29,694,083 parameters,
diffusion/models/refinenet.py). Adam 1e-4, batch 128, 210000 iterations, data in
[0, 1] at 64 px, random flips. Paper: FID 10.23 with denoising (against the test set's statistics).
"""

from configs import base


def get_config():
  config = base.get_config("ncsn")
  config.diffusion.sigma_min = 0.01
  config.diffusion.sigma_max = 90.0
  config.diffusion.num_timesteps = 500
  config.data.dataset = "celeb_a"
  config.data.image_size = 64
  config.data.num_channels = 3
  config.data.uniform_dequantization = False
  config.data.random_flip = True
  config.model.name = "ncsnv2"
  config.model.ngf = 128
  config.model.out_channels = 3
  config.model.scale_by_sigma = True
  config.model.conditional = False
  config.optim.lr = 1e-4
  config.optim.eps = 1e-8
  config.optim.warmup_steps = 0
  config.optim.grad_clip = 0.0
  config.training.batch_size = 128
  config.training.num_train_steps = 210000
  config.training.ema_decay = 0.999
  config.sampling.init = "uniform"
  config.sampling.n_steps_each = 5
  config.sampling.step_size = 3.3e-6
  config.sampling.denoise = True
  return config

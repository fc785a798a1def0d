"""NCSNv2 on FFHQ 256 px (Song & Ermon 2020, ncsnv2 configs/ffhq.yml).

Technique 1 gives sigma_1 = 348.0 (the largest pairwise distance of the training set),
technique 2 L = 2311 geometric levels down to 0.01, technique 3 the output h read as
s = h/sigma, technique 4 3 Langevin steps per level with epsilon = 9e-7, technique 5 EMA
0.999, then the final denoising step. Network: NCSNv2Deepest (ngf 128, 94,132,611 parameters,
diffusion/models/refinenet.py). Adam 1e-4 (Adam eps 1e-3), batch 32, 80000 iterations, data in
[0, 1] at 256 px, random flips. FFHQ is not in tfds: give it as an .npz of uint8 [N, 256, 256, 3] images
(--config.data.data_dir=FILE).
"""

from configs import base


def get_config():
  config = base.get_config("ncsn")
  config.diffusion.sigma_min = 0.01
  config.diffusion.sigma_max = 348.0
  config.diffusion.num_timesteps = 2311
  config.data.dataset = "npz"
  config.data.image_size = 256
  config.data.num_channels = 3
  config.data.uniform_dequantization = False
  config.data.random_flip = True
  config.model.name = "ncsnv2_deepest"
  config.model.ngf = 128
  config.model.out_channels = 3
  config.model.scale_by_sigma = True
  config.model.conditional = False
  config.optim.lr = 1e-4
  config.optim.eps = 1e-3
  config.optim.warmup_steps = 0
  config.optim.grad_clip = 0.0
  config.training.batch_size = 32
  config.training.num_train_steps = 80000
  config.training.ema_decay = 0.999
  config.sampling.init = "uniform"
  config.sampling.n_steps_each = 3
  config.sampling.step_size = 9e-7
  config.sampling.denoise = True
  return config

"""NCSNv2 on FFHQ 256 px (Song & Ermon 2020, ncsnv2 configs/ffhq.yml).

Technique 1 gives sigma_1 = 348.0 (the largest pairwise distance of the training set),
technique 2 L = 2311 geometric levels down to 0.01, technique 3 the output h read as
s = h/sigma, technique 4 3 Langevin steps per level with epsilon = 9e-7, technique 5 EMA
0.999, then the final denoising step. Network: NCSNv2Deepest (ngf 128, 94,132,611 parameters,
diffusion/models/refinenet.py). Adam 1e-4 (Adam eps 1e-3), batch 32, 80000 iterations, data in
[0, 1] at 256 px, random flips. FFHQ is not in tfds: give it as an .npz of uint8 [N, 256, 256, 3] images
(--config.data.data_dir=FILE).
"""

from configs.ncsn import ncsnv2_cifar10


def get_config():
  """NCSNv2's CIFAR-10 recipe with this dataset's ladder, network, sampler and budget."""
  config = ncsnv2_cifar10.get_config()
  config.diffusion.sigma_max = 348.0
  config.diffusion.num_timesteps = 2311
  config.data.dataset = "npz"
  config.data.image_size = 256
  config.model.name = "ncsnv2_deepest"
  config.training.batch_size = 32
  config.training.num_train_steps = 80000
  config.sampling.n_steps_each = 3
  config.sampling.step_size = 9e-7
  config.optim.eps = 1e-3
  return config

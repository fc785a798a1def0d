"""NCSNv2 on LSUN bedroom (Song & Ermon 2020, ncsnv2 configs/bedroom.yml).

Technique 1 gives sigma_1 = 190.0 (the largest pairwise distance of the training set),
technique 2 L = 1086 geometric levels down to 0.01, technique 3 the output h read as
s = h/sigma, technique 4 3 Langevin steps per level with epsilon = 1.8e-6, technique 5 EMA
0.999, then the final denoising step. Network: NCSNv2Deeper (ngf 128, 83,445,379 parameters,
diffusion/models/refinenet.py). Adam 1e-4, batch 128, 150000 iterations, data in
[0, 1] at 128 px, random flips.
"""

from configs.ncsn import ncsnv2_cifar10


def get_config():
  """NCSNv2's CIFAR-10 recipe with this dataset's ladder, network, sampler and budget."""
  config = ncsnv2_cifar10.get_config()
  config.diffusion.sigma_max = 190.0
  config.diffusion.num_timesteps = 1086
  config.data.dataset = "lsun/bedroom"
  config.data.image_size = 128
  config.model.name = "ncsnv2_deeper"
  config.training.batch_size = 128
  config.training.num_train_steps = 150000
  config.sampling.n_steps_each = 3
  config.sampling.step_size = 1.8e-6
  return config

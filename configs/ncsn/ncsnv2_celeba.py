"""NCSNv2 on CelebA 64 px (Song & Ermon 2020, ncsnv2 configs/celeba.yml).

Technique 1 gives sigma_1 = 90.0 (the largest pairwise distance of the training set),
technique 2 L = 500 geometric levels down to 0.01, technique 3 the output h read as
s = h/sigma, technique 4 5 Langevin steps per level with epsilon = 3.3e-6, technique 5 EMA
0.999, then the final denoising step. Network: the official NCSNv2 class (ngf 128, 29,694,083 parameters,
diffusion/models/refinenet.py). Adam 1e-4, batch 128, 210000 iterations, data in
[0, 1] at 64 px, random flips. Paper: FID 10.23 with denoising (against the test set's statistics).
"""

from configs.ncsn import ncsnv2_cifar10


def get_config():
  """NCSNv2's CIFAR-10 recipe with this dataset's ladder, network, sampler and budget."""
  config = ncsnv2_cifar10.get_config()
  config.diffusion.sigma_max = 90.0
  config.diffusion.num_timesteps = 500
  config.data.dataset = "celeb_a"
  config.data.image_size = 64
  config.model.name = "ncsnv2"
  config.training.batch_size = 128
  config.training.num_train_steps = 210000
  config.sampling.n_steps_each = 5
  config.sampling.step_size = 3.3e-6
  return config

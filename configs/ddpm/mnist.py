"""DDPM on MNIST (28x28 padded to 32x32), the CIFAR-10 recipe at MNIST size.

None of the DDPM-family papers reports MNIST numbers: treat the
result as a baseline to establish. Sanity floor: the per-position categorical
model gives 1.6897 test bits/dim; a diffusion model should beat it widely.
Needs prepared tfds data: `python -m diffusion.data prepare mnist
--manual_dir DIR` (no download), DIR the folder with the four official IDX .gz files
(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz,
t10k-labels-idx1-ubyte.gz).
"""

from configs import base


def get_config():
  config = base.get_config("ddpm")
  config.data.dataset = "mnist"
  config.data.image_size = 32
  config.data.num_channels = 1
  config.data.random_flip = False
  config.model.ch = 64
  config.model.ch_mult = (1, 2, 2)
  config.model.attn_resolutions = (16,)
  config.model.out_channels = 1
  config.training.num_train_steps = 100_000
  config.training.ema_decay = 0.9999
  return config

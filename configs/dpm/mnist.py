"""DPM on MNIST (Sohl-Dickstein et al. 2015): the DPM recipe with the MNIST U-Net.

The DPM code's fixed schedule (T = 1000), learned mean and variance trained on the
variational bound (DDPM's discretized decoder at t = 0), no gradient clipping, on
configs/ddpm/mnist.py's data and U-Net with 2 output channels. The paper's MNIST
number is a Parzen-window estimate (317 ± 2.7 bits, Table 2), not a bound; treat
bits/dim here as a baseline to establish (sanity floor: 1.6897 bits/dim). Needs
prepared tfds data: `python -m diffusion.data prepare mnist --manual_dir DIR`, DIR
the folder with the four official IDX .gz files (train-images-idx3-ubyte.gz, ...).
"""

from configs import base
from configs.ddpm import mnist


def get_config():
  config = base.get_config("dpm")
  config.data = mnist.get_config().data
  config.model = mnist.get_config().model
  config.model.out_channels = 2
  config.training.num_train_steps = 100_000
  return config

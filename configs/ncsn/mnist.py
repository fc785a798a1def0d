"""NCSN on MNIST (Song & Ermon 2019, ncsn configs/anneal.yml) with its RefineNet (ngf 64).

VE process with geometric sigma 1 -> 0.01 over L=10 levels, DSM with
lambda(sigma)=sigma^2, data in [0, 1] uniformly dequantized, no flips, Adam
1e-3, batch 128, 200k iterations, no EMA; annealed Langevin, 100 steps per
level, epsilon=2e-5, init U[0, 1]. Data as configs/ddpm/mnist.py; network the official
CondRefineNetDilated at ngf 64 (7,638,657 parameters).
The paper reports MNIST samples only (no metric). Needs prepared tfds data:
`python -m diffusion.data prepare mnist --manual_dir DIR`, DIR the folder with the
four official IDX .gz files (train-images-idx3-ubyte.gz, ...).
"""

from configs import base
from configs.ddpm import mnist


def get_config():
  config = base.get_config("ncsn")
  config.data = mnist.get_config().data
  config.data.centered = False
  config.data.uniform_dequantization = True
  config.model.name = "ncsn"
  config.model.ngf = 64
  config.model.out_channels = 1
  config.model.rescale_inputs = True   # NCSN codes: the network sees 2x - 1
  config.optim.lr = 1e-3
  config.optim.warmup_steps = 0
  config.optim.grad_clip = 0.0
  config.training.num_train_steps = 200_000
  config.training.ema_decay = 0.0
  config.sampling.init = "uniform"
  return config

"""DDPM on Fashion-MNIST: configs/ddpm/mnist.py with the dataset swapped.

No DPM/NCSN/DDPM paper reports diffusion numbers on Fashion-MNIST. Sanity
floor: the per-position categorical model gives 4.5875 test bits/dim.
Needs prepared tfds data: `python -m diffusion.data prepare fashion_mnist
--manual_dir DIR` (no download), DIR the folder with the four official IDX .gz files.
"""

from configs.ddpm import mnist


def get_config():
  config = mnist.get_config()
  config.data.dataset = "fashion_mnist"
  return config

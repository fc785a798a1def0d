"""DDPM on CelebA-HQ 256x256 (Ho et al. 2020), and the recipe of every 256 px DDPM model.

DDPM App. B and its code (``run_celebahq.py`` / ``run_lsun.py``, model
``unet2d16b2c112244``): T=1000, linear beta 1e-4 -> 0.02, eps-prediction with L_simple;
U-Net ch 128, ch_mult (1, 1, 2, 2, 4, 4), 2 res blocks, attention at 16x16, dropout 0
("we set the dropout rate on the other datasets to zero"); Adam 2e-5 with 5000
warm-up steps, grad-clip 1, batch 64, EMA 0.9999; sampling with the posterior
variance (fixedsmall: the 256 px scripts' ``GaussianDiffusion``). CelebA-HQ: random
flips, 0.5M steps.

113,673,219 parameters (DDPM: "114 million"), as the released checkpoints
(google/ddpm-celebahq-256, google/ddpm-ema-celebahq-256; the authors'
diffusion_celeba_hq_model): the same count as diffusers' UNet2DModel built from the
released config (tests/fixtures/diffusers/releases.json).

DDPM reports no FID for CelebA-HQ (samples only). Import the released weights with
``python -m diffusion.pretrained import <folder> --workdir=DIR``; training needs the
celeb_a_hq/256 tfds data (not available offline here).
"""

from configs import base


def ddpm_256(dataset: str, num_train_steps: int, random_flip: bool):
  """The 256 px DDPM recipe above for ``data.dataset``."""
  config = base.get_config("ddpm")
  config.data.dataset = dataset
  config.data.image_size = 256
  config.data.num_channels = 3
  config.data.random_flip = random_flip
  config.data.device_resident = False     # 30k-3M images of 256 px: streamed
  config.diffusion.var_type = "fixedsmall"
  config.sampling.var_type = "fixedsmall"
  config.model.ch = 128
  config.model.ch_mult = (1, 1, 2, 2, 4, 4)
  config.model.num_res_blocks = 2
  config.model.attn_resolutions = (16,)
  config.model.dropout = 0.0
  config.model.out_channels = 3
  config.optim.lr = 2e-5
  config.optim.warmup_steps = 5000
  config.optim.grad_clip = 1.0
  config.training.batch_size = 64
  config.training.ema_decay = 0.9999
  config.training.num_train_steps = num_train_steps
  config.training.num_samples = 16
  config.sampling.batch_size = 64
  config.eval.fid.batch_size = 64
  config.eval.bpd.batch_size = 16
  return config


def get_config():
  return ddpm_256("celeb_a_hq", 500_000, random_flip=True)

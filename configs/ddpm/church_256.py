"""DDPM on LSUN church (outdoor) 256x256 (Ho et al. 2020, Table 3: FID 7.89).

The 256 px recipe of ``configs/ddpm/celebahq_256.py`` (ch 128, ch_mult
(1, 1, 2, 2, 4, 4), attention at 16, dropout 0, Adam 2e-5, batch 64, EMA 0.9999,
fixedsmall sampling) with random flips, 1.2M steps (DDPM App. B).

113,673,219 parameters, as the released checkpoints (google/ddpm-church-256,
google/ddpm-ema-church-256; the authors' diffusion_lsun_church_model).
Paper: FID 7.89 (50,000 samples against the training set, StyleGAN2's FID code).
"""

from configs.ddpm import celebahq_256


def get_config():
  return celebahq_256.ddpm_256("lsun/church_outdoor", 1_200_000, random_flip=True)

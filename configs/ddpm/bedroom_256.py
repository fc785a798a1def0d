"""DDPM on LSUN bedroom 256x256 (Ho et al. 2020, Table 3: FID 6.36).

The 256 px recipe of ``configs/ddpm/celebahq_256.py`` (ch 128, ch_mult
(1, 1, 2, 2, 4, 4), attention at 16, dropout 0, Adam 2e-5, batch 64, EMA 0.9999,
fixedsmall sampling) without random flips ("except LSUN Bedroom", DDPM App. B),
2.4M steps.

113,673,219 parameters, as the released checkpoints (google/ddpm-bedroom-256,
google/ddpm-ema-bedroom-256; the authors' diffusion_lsun_bedroom_model). The paper's
"large" bedroom model (about 256M parameters, FID 4.90) is not released.
Paper: FID 6.36 (50,000 samples against the training set, StyleGAN2's FID code).
"""

from configs.ddpm import celebahq_256


def get_config():
  return celebahq_256.ddpm_256("lsun/bedroom", 2_400_000, random_flip=False)

"""DDPM on LSUN cat 256x256 (Ho et al. 2020, Table 3: FID 19.75).

The 256 px recipe of ``configs/ddpm/celebahq_256.py`` (ch 128, ch_mult
(1, 1, 2, 2, 4, 4), attention at 16, dropout 0, Adam 2e-5, batch 64, EMA 0.9999,
fixedsmall sampling), 1.8M steps. No random flips: the code's run_lsun.py header
trains cat with ``--randflip 0`` (the paper's App. B says flips for all but bedroom;
where they disagree the code is followed).

113,673,219 parameters, as the released checkpoints (google/ddpm-cat-256,
google/ddpm-ema-cat-256; the authors' diffusion_lsun_cat_model).
Paper: FID 19.75 (50,000 samples against the training set, StyleGAN2's FID code).
"""

from configs.ddpm import celebahq_256


def get_config():
  return celebahq_256.ddpm_256("lsun/cat", 1_800_000, random_flip=False)

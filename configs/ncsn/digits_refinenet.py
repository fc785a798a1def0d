"""NCSN on scikit-learn's 8x8 digits with NCSN's own network: the RefineNet at ngf 16.

Everything but the network is configs/ncsn/digits.py (VE, geometric sigma 1 -> 0.01 over
L=10 levels, DSM with lambda(sigma)=sigma^2, [0, 1] data uniformly dequantized, Adam 1e-3,
no EMA, annealed Langevin from U[0, 1], 100 steps per level, epsilon=2e-5 in the NCSN code's
convention), so the two configs differ in ``model`` only. The network is NCSN's
CondRefineNetDilated (``model.name='ncsn'``: conditional instance norm++ on the level
index, ELU, average-pooling chained residual pooling; the output is the score) at ngf 16
instead of MNIST's 64: 518,817 parameters, against 7,638,657 at ngf 64 on MNIST. A training
step of batch 32 costs about what one of the small digits U-Net (651,041 parameters) costs:
7.5 steps/s for both on 2 CPU cores; sampling 297 digits (1,000 Langevin steps) about
4-7 minutes there (the machine shared).

What the official strides and dilations do at 8 px (they were made for 28-32 px):
res1 works at 8x8; res2 halves to 4x4 (the network's only down-sampling, so H and W
must be even); res3 (dilation 2) and res4 (dilation 4) keep 4x4. On a 4x4 map a 3x3
convolution dilated by 2 (padding 2) reaches only the pixels of its own row and column
parity, so res3 mixes each quarter of the map separately until the refine blocks (3x3
undilated convolutions, 5x5 pooling) mix them again; one dilated by 4 (padding 4) has
its eight outer taps in the padding for every output pixel, so res4's convolutions act
as 1x1 convolutions: their outer taps (40,960 of the 518,817 parameters) neither change
the output nor receive a gradient. The refine blocks upsample 4x4 -> 8x8 (bilinear,
aligned corners). The network still builds, trains and samples at 8 px; the receptive
field that the dilations buy at 28 px is the whole 8x8 image here anyway.
"""

from configs.ncsn import digits


def get_config():
  config = digits.get_config()
  config.model.name = "ncsn"
  config.model.ngf = 16
  config.model.out_channels = 1
  config.model.scale_by_sigma = False   # NCSN's network outputs the score itself
  return config

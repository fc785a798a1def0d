"""Networks only: the DDPM U-Net, a 2-D MLP, an exact analytic mixture model, the VAE's MLPs.

Network modules are called as ``module.apply({'params': p}, x, cond, train=False,
rngs={'dropout': key})`` with x [B, H, W, C] (unet) or [B, D] (mlp) and cond a
float [B] noise-level input; they return float32 [B, ..., out_channels]. The
analytic model has no parameters and is called as
``module.apply({}, x, signal_scale, noise_std)``. Nothing here reads a config:
:mod:`diffusion.families.builders` turns ``config.model`` into a module.
"""

from diffusion.models.analytic import AnalyticMixture
from diffusion.models.layers import timestep_embedding
from diffusion.models.mlp import MLP
from diffusion.models.unet import UNet

__all__ = ["UNet", "MLP", "AnalyticMixture", "timestep_embedding"]

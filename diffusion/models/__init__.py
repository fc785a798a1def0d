"""Networks only: the DDPM U-Net, a 2-D MLP, NCSN's RefineNets, an exact analytic mixture
model, the VAE's MLPs.

Network modules are called as ``module.apply({'params': p}, x, cond, train=False,
rngs={'dropout': key})`` with x [B, H, W, C] (unet) or [B, D] (mlp) and cond a
float [B] noise-level input; they return float32 [B, ..., out_channels]. The
analytic model has no parameters and is called as
``module.apply({}, x, signal_scale, noise_std)``. Nothing here reads a config: each
``model.name`` is a :class:`~diffusion.models.network.Network` (its constructor from
plain keyword options, its options, its rules), and :mod:`diffusion.families.builders`
passes it the ``config.model`` values.
"""

from typing import Dict

from diffusion.models import analytic, mlp, refinenet, unet
from diffusion.models.analytic import AnalyticMixture
from diffusion.models.layers import timestep_embedding
from diffusion.models.mlp import MLP
from diffusion.models.network import Network
from diffusion.models.unet import UNet
from diffusion.models.vae_mlp import VAE

__all__ = ["NETWORKS", "VAE_NETWORKS", "UNet", "MLP", "AnalyticMixture", "Network",
           "timestep_embedding"]

# Plain dict, config.model.name -> the network (written out here only).
NETWORKS: Dict[str, Network] = {
    "unet": unet.NETWORK,
    "mlp": mlp.NETWORK,
    "analytic": analytic.NETWORK,
    "ncsn": refinenet.NCSN,
    "ncsnv2": refinenet.NCSNV2,
    "ncsnv2_deeper": refinenet.NCSNV2_DEEPER,
    "ncsnv2_deepest": refinenet.NCSNV2_DEEPEST,
}

# Plain dict, the VAE's config.model.name -> its Flax module.
VAE_NETWORKS = {"mlp_vae": VAE}

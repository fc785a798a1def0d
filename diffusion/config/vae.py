"""The VAE family's sections: objective, encoder/decoder network, sampling, the whole run."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Tuple

from diffusion import models
from diffusion.config import presets
from diffusion.config.common import DataConfig, OptimConfig, TrainingConfig
from diffusion.config.evals import eval_section
from diffusion.config.schema import Section, fail, field
from diffusion.models.network import DTYPES
from diffusion.models.vae_mlp import ACTIVATIONS
from diffusion.options import AT_LEAST_1, NONNEGATIVE

VAE_OBJECTIVES = ("elbo", "iwae")
VAE_OUTPUTS = ("mean", "bernoulli")


@dataclasses.dataclass(frozen=True)
class VAEConfig(Section):
  """The VAE's objective (Kingma & Welling 2013 eq. 3; Burda et al. 2016 eq. 8)."""
  PATH: ClassVar[str] = "vae"
  objective: str = field("elbo", "elbo: E_q[log p(x|z)] - kl_weight * KL(q(z|x) || p(z)); iwae: "
                         "log (1/k) sum_k p(x, z_k)/q(z_k|x), k = num_samples",
                         choices=VAE_OBJECTIVES)
  num_samples: int = field(1, "reparameterized samples of q(z|x) per example (k)",
                           rule=AT_LEAST_1)
  kl_weight: float = field(1.0, "weight of the KL term of the ELBO (beta-VAE; 1 = the ELBO; "
                           "objective=elbo only)",
                           rule=NONNEGATIVE)

  def check(self):
    if self.objective == "iwae" and self.kl_weight != 1.0:
      fail("vae.kl_weight", self.kl_weight, "the iwae objective has no KL weight; use "
           "vae.objective='elbo' for a beta-VAE")


@dataclasses.dataclass(frozen=True)
class VAEModelConfig(Section):
  """MLP encoder q(z|x) (diagonal Gaussian) and decoder p(x|z) (Bernoulli logits)."""
  PATH: ClassVar[str] = "model"
  name: str = field(next(iter(models.VAE_NETWORKS)), "mlp_vae (Kingma & Welling 2013, "
                    "App. C.2)", choices=models.VAE_NETWORKS)
  latent_dim: int = field(128, "dimension L of z (2 draws the latent manifold)", rule=AT_LEAST_1)
  hidden_dims: Tuple[int, ...] = field((256, 256), "encoder widths (the decoder mirrors them)",
                                       rule=AT_LEAST_1)
  activation: str = field("relu", "relu, swish or tanh", choices=ACTIVATIONS)
  dtype: str = field("float32", "compute dtype (parameters stay float32)", choices=DTYPES)


@dataclasses.dataclass(frozen=True)
class VAESamplingConfig(Section):
  """What a VAE sample is: the decoded mean of z ~ N(0, I), or a Bernoulli draw from it."""
  PATH: ClassVar[str] = "sampling"
  output: str = field("mean", "mean: sigmoid(logits) (grey); bernoulli: a {0, 1} draw",
                      choices=VAE_OUTPUTS)
  batch_size: int = field(256, "samples per compiled call", rule=AT_LEAST_1)




VAEEvalConfig = eval_section("VAEEvalConfig", "vae", "The evaluators of the VAE family.")


@dataclasses.dataclass(frozen=True)
class VAERunConfig(Section):
  """A whole config of the VAE family (defaults: dynamically binarized MNIST)."""
  PATH: ClassVar[str] = ""
  family: str = field("vae", "model family: vae", choices=("vae",))
  vae: VAEConfig = VAEConfig()
  data: DataConfig = DataConfig()
  model: VAEModelConfig = VAEModelConfig()
  optim: OptimConfig = OptimConfig()
  training: TrainingConfig = TrainingConfig()
  sampling: VAESamplingConfig = VAESamplingConfig()
  eval: VAEEvalConfig = VAEEvalConfig()

  @classmethod
  def base_for(cls, values):
    """A partial config takes the VAE's defaults (MNIST, Adam, ...) for what it leaves out."""
    del values
    return cls.with_changes(presets.VARIANT_PRESETS["vae"])


"""The diffusion family's sections: process and loss, network, sampler, and the whole run.

``model`` and ``sampling`` are derived from the plug-ins: their fields are the options
the registered networks (:data:`diffusion.models.NETWORKS`) and samplers
(:data:`diffusion.samplers.SAMPLERS`) declare, plus the few fields common to all, so a
network or a sampler brings its own fields, defaults and rules. Each field's doc says
which plug-ins read it.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from diffusion import models, samplers
from diffusion.config import presets
from diffusion.config.common import DataConfig, OptimConfig, TrainingConfig
from diffusion.config.evals import eval_section
from diffusion.config.schema import (Section, fail, field, mapping_items, option_fields,
                                     readers_note, section)
from diffusion.core import losses, processes, schedules
from diffusion.core.model_fn import NOISE_INPUTS
from diffusion.errors import ConfigError, check_choice
from diffusion.options import AT_LEAST_1, NONNEGATIVE, OPEN_UNIT, POSITIVE, union

QUANTIZATIONS = ("truncate", "round")
# Schedules that read both beta_start and beta_end (so need beta_start < beta_end).
_BETA_RANGE_SCHEDULES = ("linear", "quad", "warmup10", "warmup50", "sigmoid", "scaled_linear")


@dataclasses.dataclass(frozen=True)
class DiffusionConfig(Section):
  """The forward process, its schedule and the training loss (defaults: DDPM)."""
  PATH: ClassVar[str] = "diffusion"
  variant: str = field(presets.DEFAULT_VARIANT, "ddpm, dpm (VP process) or ncsn (VE process)",
                       choices=presets.VARIANTS)
  schedule: str = field(
      "linear", "VP: linear, quad, warmup10, warmup50, const, jsd, cosine, sigmoid, dpm, "
      "scaled_linear; VE: geometric",
      choices=schedules.BETA_SCHEDULES + schedules.SIGMA_SCHEDULES)
  num_timesteps: int = field(1000, "T (VP) or the number of sigma levels L (VE)", rule=AT_LEAST_1)
  beta_start: float = field(1e-4, "first beta of the linear-family schedules", rule=OPEN_UNIT)
  beta_end: float = field(0.02, "last beta of the linear-family schedules", rule=OPEN_UNIT)
  cosine_s: float = field(0.008, "offset s of the cosine schedule (Improved DDPM eq. 17)",
                          rule=POSITIVE)
  sigma_min: float = field(0.01, "smallest sigma of the VE ladder (sigmas[0], t = 0)",
                           rule=POSITIVE)
  sigma_max: float = field(1.0, "largest sigma of the VE ladder", rule=POSITIVE)
  loss: str = field("mse", "mse (L_simple; DSM for VE), hybrid (mse + lambda*L_vlb), "
                    "kl (L_vlb)", choices=losses.DIFFUSION_LOSSES)
  var_type: str = field("fixedlarge", "reverse variance: fixedlarge, fixedsmall, "
                        "learned_range (the model outputs 2C channels)",
                        choices=processes.VAR_TYPES)
  hybrid_lambda: float = field(0.001, "lambda of the hybrid loss (Improved DDPM)",
                               rule=NONNEGATIVE)
  loss_weighting: str = field("none", "per-t weight of the eps-MSE: none, snr, min_snr_5",
                              choices=losses.LOSS_WEIGHTINGS)
  clip_x0: bool = field(False, "clip x0_hat inside the training bound (the DDPM code does not)")
  decoder: str = field("discretized", "t = 0 term of the bound: discretized (8-bit images, "
                       "DDPM eq. 13) or gaussian (a density, for continuous data)",
                       choices=losses.DECODERS)

  @property
  def process_kind(self) -> str:
    """``vp`` or ``ve``: the process this variant uses."""
    return presets.PROCESS_OF_VARIANT[self.variant]

  @classmethod
  def base_for(cls, values):
    """A partial section takes its variant's paper defaults for what it leaves out."""
    variant = values.get("variant", presets.DEFAULT_VARIANT)
    check_choice("diffusion.variant", variant, presets.VARIANTS)
    return cls(**presets.VARIANT_PRESETS[variant].get("diffusion", {}))

  def check(self):
    vp = self.process_kind == "vp"
    allowed = schedules.BETA_SCHEDULES if vp else schedules.SIGMA_SCHEDULES
    if self.schedule not in allowed:
      fail("diffusion.schedule", self.schedule,
           f"diffusion.variant={self.variant!r} ({'VP' if vp else 'VE'}) takes "
           f"{', '.join(repr(s) for s in allowed)}")
    if not vp and (self.loss != "mse" or self.var_type == "learned_range"):
      raise ConfigError(
          f"diffusion.loss={self.loss!r} / var_type={self.var_type!r} needs a VP process; "
          "NCSN (VE) trains with loss='mse' (denoising score matching) and a fixed variance.")
    if self.var_type == "learned_range" and self.loss == "mse":
      raise ConfigError("diffusion.var_type='learned_range' needs a variance term in the "
                        "loss; set diffusion.loss='hybrid' or 'kl'.")
    if self.loss == "hybrid" and self.var_type != "learned_range":
      raise ConfigError(f"diffusion.var_type={self.var_type!r} is not valid with "
                        "diffusion.loss='hybrid', which trains the variance only; choose "
                        "'learned_range'.")
    if vp and self.schedule in _BETA_RANGE_SCHEDULES and not self.beta_start < self.beta_end:
      fail("diffusion.beta_start", self.beta_start,
           f"it must be below diffusion.beta_end={self.beta_end!r}")
    if not self.sigma_min < self.sigma_max:
      fail("diffusion.sigma_min", self.sigma_min,
           f"it must be below diffusion.sigma_max={self.sigma_max!r}")
    # The schedule's own limits (e.g. betas outside (0, 1] for a short jsd).
    if vp:
      schedules.get_beta_schedule(self.schedule, self.num_timesteps, self.beta_start,
                                  self.beta_end, self.cosine_s)
    else:
      schedules.geometric_sigmas(self.sigma_min, self.sigma_max, self.num_timesteps)



# --- model: the union of the networks' options, and how the glue reads any network ----

_NETWORK_OPTIONS, _NETWORK_READERS = union(
    (name, network.options) for name, network in models.NETWORKS.items())


def _check_model(self) -> None:
  """The chosen network's rules between its own options."""
  own = models.NETWORKS[self.name].check
  if own is not None:
    own(self.to_dict())


ModelConfig = section(
    "ModelConfig", "model",
    "The ε-network (defaults: the DDPM CIFAR-10 U-Net, 35,746,307 parameters); its fields "
    "are the registered networks' options.",
    [("name", str, field(next(iter(models.NETWORKS)),
                         f"{', '.join(models.NETWORKS)} (README: Networks)",
                         choices=models.NETWORKS))]
    + option_fields(_NETWORK_OPTIONS, {
        k: readers_note(_NETWORK_READERS[k], tuple(models.NETWORKS)) + o.doc
        for k, o in _NETWORK_OPTIONS.items()})
    + [("cond", str, field("index", "noise-level input: index (t) or log_sigma (VE only)",
                           choices=NOISE_INPUTS)),
       ("scale_by_sigma", bool, field(False, "NCSNv2 technique 3: read the output as "
                                      "s(x)/sigma")),
       ("rescale_inputs", bool, field(False, "feed the network 2x - 1 (NCSN codes, for data "
                                      "in [0, 1]); the data and the noise stay in data "
                                      "space"))],
    check=_check_model)


# --- sampling: the union of the samplers' options, and what every draw shares ---------

_SAMPLER_OPTIONS, _SAMPLER_READERS = samplers.declared()

SamplingConfig = section(
    "SamplingConfig", "sampling",
    "How samples are drawn (defaults: DDPM's ancestral sampler with fixedlarge variance); "
    "its fields are the registered samplers' options.",
    option_fields(_SAMPLER_OPTIONS, {
        k: readers_note(_SAMPLER_READERS[k], tuple(samplers.SAMPLERS)) + o.doc
        for k, o in _SAMPLER_OPTIONS.items()})
    + [("quantize", str, field("truncate", "samples to uint8: truncate (improved-diffusion, "
                               "score_sde: uint8(clip(255 x))) or round",
                               choices=QUANTIZATIONS)),
       ("batch_size", int, field(256, "samples per compiled call", rule=AT_LEAST_1))])


DiffusionEvalConfig = eval_section("DiffusionEvalConfig", "diffusion",
                                   "The evaluators of the diffusion family, each with its "
                                   "own cadence.")


@dataclasses.dataclass(frozen=True)
class DiffusionRunConfig(Section):
  """A whole config of the diffusion family (DPM, NCSN, DDPM)."""
  PATH: ClassVar[str] = ""
  family: str = field("diffusion", "model family: diffusion (DPM, NCSN, DDPM) or vae",
                      choices=("diffusion",))
  diffusion: DiffusionConfig = DiffusionConfig()
  data: DataConfig = DataConfig()
  model: ModelConfig = ModelConfig()
  optim: OptimConfig = OptimConfig()
  training: TrainingConfig = TrainingConfig()
  sampling: SamplingConfig = SamplingConfig()
  eval: DiffusionEvalConfig = DiffusionEvalConfig()

  @classmethod
  def base_for(cls, values):
    """A partial config takes its variant's defaults in every section it leaves out."""
    diffusion = values.get("diffusion")
    variant = (diffusion.variant if isinstance(diffusion, DiffusionConfig) else
               mapping_items(diffusion, "diffusion").get("variant", presets.DEFAULT_VARIANT)
               if diffusion is not None else presets.DEFAULT_VARIANT)
    check_choice("diffusion.variant", variant, presets.VARIANTS)
    return cls.with_changes(presets.VARIANT_PRESETS[variant])

"""Typed config sections: every field's default, allowed values and checks, defined once.

A run's config is a tree of sections, each a frozen dataclass (vdm's
``VDMConfig(**config.model)``) read by the code, written as an
``ml_collections.ConfigDict`` by config files and the command line:

  =========  ===========================  ==========================================
  section    dataclass                    what it sets
  =========  ===========================  ==========================================
  diffusion  DiffusionConfig              process, schedule, loss (diffusion family)
  data       DataConfig                   dataset, size, range, augmentation
  model      ModelConfig                  the ε-network (its networks' options)
  optim      OptimConfig                  optimizer and learning-rate schedule
  training   TrainingConfig               the loop: steps, batch, EMA, cadences
  sampling   SamplingConfig               the sampler (its samplers' options)
  eval       DiffusionEvalConfig          one sub-section per evaluator (bpd, fid, ...)
  =========  ===========================  ==========================================

The package, by concern (this file is its face: callers import from here):

  schema.py    Section, field, the checked parse (no domain word)
  common.py    data, optim, training (every family)
  diffusion.py the diffusion family's sections; ``model`` and ``sampling`` derived from
               the registered networks' and samplers' declared options
  vae.py       the VAE family's sections
  evals.py     one section per evaluator, and the one table of evaluator names
  presets.py   the papers' choices per variant (plain data)
  checks.py    rules between sections; ``validate``
  catalog.py   static facts of every dataset name
  files.py     the one loader of ``get_config()`` files

Every public function that takes a section (``make_process(config.diffusion)``,
``make_model(config.model)``, ...) accepts a ConfigDict section, a plain dict or the
dataclass, through :meth:`Section.parse`. ``default_config(variant)`` builds the whole
default config of a variant (the dataclass defaults plus ``VARIANT_PRESETS``);
``configs/base.py`` is made from it.
"""

from typing import Any, Dict, Optional

import ml_collections

from diffusion import trees
from diffusion.config.common import (BINARIZATIONS, LR_SCHEDULES, OPTIMIZERS, WRITERS,
                                     DataConfig, OptimConfig, TrainingConfig)
from diffusion.config.diffusion import (DiffusionConfig, DiffusionEvalConfig,
                                        DiffusionRunConfig, ModelConfig, SamplingConfig)
from diffusion.config.evals import (BpdEvalConfig, ClassifierFidEvalConfig, ElboEvalConfig,
                                    FidEvalConfig, OdeBpdEvalConfig)
from diffusion.config.presets import PROCESS_OF_VARIANT, VARIANT_PRESETS, VARIANTS
from diffusion.config.schema import Section, mapping_items
from diffusion.config.vae import (VAEConfig, VAEEvalConfig, VAEModelConfig, VAERunConfig,
                                  VAESamplingConfig)
from diffusion.core.processes import VAR_TYPES
from diffusion.errors import check_choice

__all__ = [
    "BINARIZATIONS", "LR_SCHEDULES", "OPTIMIZERS", "POPULATION_FIELDS", "PROCESS_OF_VARIANT",
    "RUN_CONFIGS", "VARIANTS", "VARIANT_PRESETS", "VAR_TYPES", "WRITERS", "BpdEvalConfig",
    "ClassifierFidEvalConfig", "DataConfig", "DiffusionConfig", "DiffusionEvalConfig",
    "DiffusionRunConfig", "ElboEvalConfig", "FidEvalConfig", "ModelConfig",
    "OdeBpdEvalConfig", "OptimConfig", "SamplingConfig", "Section", "TrainingConfig",
    "VAEConfig", "VAEEvalConfig", "VAEModelConfig", "VAERunConfig", "VAESamplingConfig",
    "default_config", "grid_sampling", "parse_config", "program_key", "reference_table",
    "to_config_dict"]

# config.family -> its whole-config class (each class names its own family).
RUN_CONFIGS = {cls().family: cls for cls in (DiffusionRunConfig, VAERunConfig)}
_DEFAULT_FAMILY = next(iter(RUN_CONFIGS))

# Fields held as arrays in the train state (optimizer hyperparameters in opt_state; seed,
# EMA decay and loss weights in TrainState.hparams). Runs that differ only in these share
# one compiled step and can train as one population (jax.vmap over train states).
POPULATION_FIELDS = (
    "training.seed", "training.ema_decay",
    "optim.lr", "optim.warmup_steps", "optim.beta1", "optim.beta2", "optim.eps",
    "optim.weight_decay", "optim.grad_clip", "optim.lr_schedule", "optim.decay_steps",
    "optim.decay_rate", "optim.min_lr",
    "diffusion.hybrid_lambda", "vae.kl_weight",
)


def grid_sampling(config) -> Optional[SamplingConfig]:
  """The sampling section of the grids drawn while training: ``config.sampling`` with
  ``training.grid_method`` / ``grid_steps`` when a grid method is set (diffusion runs
  only; None for the VAE, whose grids are decoder means)."""
  if not isinstance(config.sampling, SamplingConfig):
    return None
  t = config.training
  if not t.grid_method:
    return config.sampling
  # A short process (a test's T = 20) takes all its levels rather than failing a preview.
  steps = min(t.grid_steps, config.diffusion.num_timesteps)
  return config.sampling.replace(method=t.grid_method, num_steps=steps)


def program_key(config) -> Dict[str, Any]:
  """The config with :data:`POPULATION_FIELDS` removed: runs with equal keys share a
  compiled train step (and loop cadences), so they may form one population."""
  flat = trees.flatten(parse_config(config).to_dict(), sep=".")
  return {k: v for k, v in flat.items() if k not in POPULATION_FIELDS}


def default_config(variant: str = "ddpm"):
  """The whole default config of ``variant`` (ddpm | ncsn | dpm | vae), typed."""
  check_choice("variant", variant, tuple(VARIANT_PRESETS))
  preset = VARIANT_PRESETS[variant]
  return RUN_CONFIGS[preset.get("family", _DEFAULT_FAMILY)].with_changes(preset)


def parse_config(config):
  """The typed whole config from a ConfigDict / dict (sections may be left out)."""
  if isinstance(config, Section):
    return config
  values = mapping_items(config, "")
  family = values.get("family", _DEFAULT_FAMILY)
  check_choice("family", family, RUN_CONFIGS)
  return RUN_CONFIGS[family].parse(values)


def to_config_dict(section: Section) -> ml_collections.ConfigDict:
  """A typed section (or whole config) as a ConfigDict, e.g. for ``configs/base.py``."""
  return ml_collections.ConfigDict(section.to_dict())


def reference_table(run_cls=DiffusionRunConfig) -> str:
  """The README's config reference for one family: a Markdown table of every field."""
  rows = ["| field | default | meaning |", "|---|---|---|"]
  defaults = run_cls()

  def value(path):
    node = defaults
    for part in path.split("."):
      node = getattr(node, part)
    return node

  for path, doc in run_cls.field_docs().items():
    rows.append(f"| `{path}` | `{value(path)!r}` | {doc.replace('|', chr(92) + '|')} |")
  return "\n".join(rows)

"""The sections every family shares: the data, the optimizer and the training loop."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional, Tuple

from diffusion import samplers
from diffusion.config import catalog, presets
from diffusion.config.schema import Section, fail, field
from diffusion.errors import ConfigError
from diffusion.options import (AT_LEAST_1, DECAY_RATE, HALF_OPEN_UNIT, NONNEGATIVE,
                               POSITIVE)

BINARIZATIONS = ("none", "dynamic")
OPTIMIZERS = ("adam", "adamw", "rmsprop")
LR_SCHEDULES = ("constant", "exponential", "cosine")
WRITERS = ("jsonl", "tensorboard", "wandb")


@dataclasses.dataclass(frozen=True)
class DataConfig(Section):
  """What the model is trained on; dataset names are checked by :mod:`diffusion.data`."""
  PATH: ClassVar[str] = "data"
  dataset: str = field("cifar10", "digits, mnist, fashion_mnist, cifar10, cifar10_sample, npz, "
                       "celeb_a, celeb_a_hq[/R], lsun/<category>, or a 2-D toy set")
  image_size: int = field(32, "square image side in pixels (ignored by 2-D toy sets)",
                          rule=AT_LEAST_1)
  num_channels: int = field(3, "image channels, or the dimension of a toy set", rule=AT_LEAST_1)
  centered: bool = field(True, "model data in [-1, 1] (DDPM); False: [0, 1] (NCSN)")
  uniform_dequantization: bool = field(False, "add U[0, 1) to the 8-bit values before "
                                       "scaling (NCSN)")
  random_flip: bool = field(True, "mirror each training image with probability 1/2")
  tfds_data_dir: str = field("", "tfds data dir (\"\" = ~/tensorflow_datasets)")
  data_dir: str = field("", "files of cifar10_sample / npz")
  split: str = field("train", "training split")
  eval_split: str = field("test", "split the evaluators score")
  device_resident: bool = field(True, "hold uint8 data on the device and draw batches "
                                "inside the compiled step")
  binarize: str = field("none", "dynamic: every training pixel ~ Bernoulli(intensity), drawn "
                        "anew each step (VAE on MNIST); the eval split is binarized once with "
                        "binarize_seed", choices=BINARIZATIONS)
  binarize_seed: int = field(0, "seed of the fixed binarization of the eval split",
                             rule=NONNEGATIVE)
  mixture_weights: Tuple[float, ...] = field((0.8, 0.2), "toy mixture weights (NCSN Figs. 2-3)",
                                             rule=NONNEGATIVE)
  mixture_means: Tuple[Tuple[float, ...], ...] = field(((5.0, 5.0), (-5.0, -5.0)),
                                                       "toy mixture means [K, D]")
  mixture_stds: Tuple[float, ...] = field((1.0, 1.0), "toy mixture isotropic stds [K]",
                                          rule=POSITIVE)

  @property
  def is_toy(self) -> bool:
    """True for the generated 2-D sets (points, not images)."""
    return catalog.dataset_info(self.dataset).kind == "toy"

  @property
  def toy_dim(self) -> Optional[int]:
    """Dimension D of a toy set's points (the mixture's means set it), None for images."""
    if not self.is_toy:
      return None
    return len(self.mixture_means[0]) if self.dataset == "mixture" else 2

  @property
  def example_shape(self) -> Tuple[int, ...]:
    """Shape of one model input: (H, W, C) for images, (D,) for toy points."""
    if self.is_toy:
      return (self.toy_dim,)
    return (self.image_size, self.image_size, self.num_channels)

  @classmethod
  def base_for(cls, values):
    """A partial section takes its dataset's own image size and channel count."""
    info = catalog.dataset_info(values.get("dataset", cls.dataset))
    native = {}
    if info.image_size is not None:
      native["image_size"] = info.image_size
    if info.num_channels is not None:
      native["num_channels"] = info.num_channels
    elif info.name == "mixture":
      means = values.get("mixture_means", cls.mixture_means)
      native["num_channels"] = len(means[0]) if len(means) else 2
    return cls(dataset=info.name, **native)

  @classmethod
  def rebase(cls, base, values):
    """A data section that names another dataset than its base takes that dataset's own
    image size and channel count for what it leaves out, whichever entry point parses it."""
    if "dataset" not in values or values["dataset"] == base.dataset:
      return base
    native = cls.base_for(values)
    keep = {k: getattr(native, k) for k in ("image_size", "num_channels")}
    return dataclasses.replace(base, dataset=native.dataset, **keep)

  def check(self):
    info = catalog.dataset_info(self.dataset)
    if self.binarize != "none" and (self.centered or self.uniform_dequantization):
      fail("data.binarize", self.binarize, "binarized pixels are {0, 1}: set data.centered="
           "False and data.uniform_dequantization=False")
    k = len(self.mixture_weights)
    if k == 0 or sum(self.mixture_weights) <= 0:
      fail("data.mixture_weights", self.mixture_weights,
           "give non-negative numbers with a positive sum")
    dims = {len(m) for m in self.mixture_means}
    if len(self.mixture_means) != k or len(dims) != 1 or 0 in dims:
      fail("data.mixture_means", self.mixture_means,
           f"give {k} means (one per weight) of one dimension D, as [K, D]")
    if len(self.mixture_stds) != k:
      fail("data.mixture_stds", self.mixture_stds,
           f"give {k} positive numbers (one isotropic std per component)")
    want = info.num_channels
    if info.kind == "image" and want is not None and self.num_channels != want:
      raise ConfigError(
          f"data.num_channels={self.num_channels!r} does not match data.dataset="
          f"{self.dataset!r}, which has {want} channel{'s' if want > 1 else ''}; set "
          f"data.num_channels={want}.")
    if info.name == "digits" and self.image_size not in catalog.DIGITS_SIZES:
      raise ConfigError(f"data.image_size={self.image_size!r} is not valid for data.dataset="
                        f"'digits'; choose one of {', '.join(map(str, catalog.DIGITS_SIZES))}.")


@dataclasses.dataclass(frozen=True)
class OptimConfig(Section):
  """Optimizer and learning rate (defaults: DDPM's Adam 2e-4 with 5000 warm-up steps)."""
  PATH: ClassVar[str] = "optim"
  optimizer: str = field("adam", "adam, adamw or rmsprop", choices=OPTIMIZERS)
  lr: float = field(2e-4, "peak learning rate", rule=POSITIVE)
  beta1: float = field(0.9, "Adam beta1", rule=HALF_OPEN_UNIT)
  beta2: float = field(0.999, "Adam beta2; RMSProp's decay of the squared-gradient average",
                       rule=HALF_OPEN_UNIT)
  eps: float = field(1e-8, "Adam / RMSProp epsilon", rule=POSITIVE)
  weight_decay: float = field(0.0, "decoupled weight decay (adamw only)", rule=NONNEGATIVE)
  warmup_steps: int = field(5000, "linear warm-up from 0 (DDPM code)", rule=NONNEGATIVE)
  grad_clip: float = field(1.0, "global-norm gradient clipping (0 = off)", rule=NONNEGATIVE)
  lr_schedule: str = field("constant", "after warm-up: constant, exponential (lr * decay_rate^"
                           "(s/decay_steps), DPM code) or cosine (to min_lr over decay_steps)",
                           choices=LR_SCHEDULES)
  decay_steps: int = field(0, "steps of the exponential or cosine decay", rule=NONNEGATIVE)
  decay_rate: float = field(1.0, "exponential decay factor per decay_steps", rule=DECAY_RATE)
  min_lr: float = field(0.0, "floor of the decayed learning rate", rule=NONNEGATIVE)

  def check(self):
    if self.min_lr > self.lr:
      fail("optim.min_lr", self.min_lr, f"it must not exceed optim.lr={self.lr!r}")
    if self.lr_schedule != "constant" and self.decay_steps == 0:
      fail("optim.decay_steps", self.decay_steps,
           f"optim.lr_schedule={self.lr_schedule!r} needs decay_steps > 0")
    if self.lr_schedule == "constant" and self.decay_steps > 0:
      fail("optim.decay_steps", self.decay_steps,
           "it has no effect with optim.lr_schedule='constant'; set optim.lr_schedule="
           "'exponential' or 'cosine', or decay_steps=0")
    if self.weight_decay > 0 and self.optimizer != "adamw":
      fail("optim.weight_decay", self.weight_decay,
           f"optim.optimizer={self.optimizer!r} has no weight decay; use 'adamw'")


@dataclasses.dataclass(frozen=True)
class TrainingConfig(Section):
  """The training loop (defaults: DDPM CIFAR-10, 800k steps of batch 128)."""
  PATH: ClassVar[str] = "training"
  num_train_steps: int = field(800_000, "number of optimizer steps", rule=AT_LEAST_1)
  batch_size: int = field(128, "global batch, split over all devices", rule=AT_LEAST_1)
  seed: int = field(0, "every random draw derives from (seed, step)", rule=NONNEGATIVE)
  ema_decay: float = field(0.9999, "EMA of the parameters (0 = EMA params equal params)",
                           rule=HALF_OPEN_UNIT)
  steps_per_call: int = field(1, "train steps scanned into one compiled call", rule=AT_LEAST_1)
  log_every: int = field(100, "steps between metric rows", rule=AT_LEAST_1)
  checkpoint_every: int = field(5000, "steps between checkpoints", rule=AT_LEAST_1)
  keep_checkpoints: int = field(3, "readable checkpoints kept", rule=AT_LEAST_1)
  sample_every: int = field(10_000, "steps between EMA sample grids (0 = none)",
                            rule=NONNEGATIVE)
  num_samples: int = field(64, "samples in each grid", rule=AT_LEAST_1)
  writers: str = field("jsonl,tensorboard", "metric writers, comma-separated: jsonl, "
                       "tensorboard, wandb (pip install '.[wandb]')")
  # DDPM's grids: DDIM's 50 steps (presets.py says why).
  grid_method: str = field(presets.GRID_METHOD, "sampler of the grids drawn while training "
                           "('' = sampling.method and sampling.num_steps); sample.py, "
                           "evaluations and reproductions always use config.sampling",
                           choices=("",) + tuple(samplers.SAMPLERS))
  grid_steps: int = field(presets.GRID_STEPS, "steps of training.grid_method (0 = all "
                          "levels; at most the process's levels)", rule=NONNEGATIVE)

  def check(self):
    bad = [w for w in self.writers.split(",") if w.strip() not in WRITERS]
    if bad or not self.writers.strip():
      fail("training.writers", self.writers,
           f"it must be a comma-separated list of {', '.join(WRITERS)}")
    k = self.steps_per_call
    for name in ("num_train_steps", "log_every", "checkpoint_every", "sample_every"):
      if getattr(self, name) % k:
        fail(f"training.{name}", getattr(self, name),
             f"it must be a multiple of training.steps_per_call={k}: events happen between "
             "compiled calls")


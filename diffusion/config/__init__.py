"""Typed config sections: every field's default, allowed values and checks, defined once.

A run's config is a tree of sections. Config files and the command line use an
``ml_collections.ConfigDict`` (so ``--config.optim.lr=1e-4`` works); the code reads
each section as a frozen dataclass defined here, in the manner of vdm's
``VDMConfig(**config.model)``:

  =========  ===========================  ==========================================
  section    dataclass                    what it sets
  =========  ===========================  ==========================================
  diffusion  DiffusionConfig              process, schedule, loss (diffusion family)
  data       DataConfig                   dataset, size, range, augmentation
  model      ModelConfig                  the ε-network (U-Net, MLP, analytic)
  optim      OptimConfig                  optimizer and learning-rate schedule
  training   TrainingConfig               the loop: steps, batch, EMA, cadences
  sampling   SamplingConfig               the sampler (ancestral, DDIM, Langevin)
  eval       DiffusionEvalConfig          one sub-section per evaluator (bpd, fid)
  =========  ===========================  ==========================================

Every public function that takes a section (``make_process(config.diffusion)``,
``make_model(config.model)``, ...) accepts a ConfigDict section, a plain dict or the
dataclass, through :meth:`Section.parse`: missing fields take their defaults here,
an unknown key fails at once with one line naming it and the closest valid name,
and every value is checked (type, allowed values, range, finiteness) with an error
that names the field. Rules that involve several sections live in
:mod:`diffusion.config.checks`.

``default_config(variant)`` builds the whole default config of a variant (the
dataclass defaults plus the variant's paper choices in ``VARIANT_PRESETS``);
``configs/base.py`` is made from it, so a default exists in one place only.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Callable, ClassVar, Dict, Mapping, Optional, Tuple

import ml_collections
import numpy as np

from diffusion import samplers, trees
from diffusion.config import catalog
from diffusion.core import losses, processes, schedules
from diffusion.samplers import ddim, dpm_solver, langevin, ode, pc
from diffusion.errors import ConfigError, check_choice, did_you_mean

# ---------------------------------------------------------------------------
# Allowed values (each list exists here only; modules implement them)
# ---------------------------------------------------------------------------

FAMILIES = ("diffusion", "vae")
VARIANTS = ("ddpm", "ncsn", "dpm")                 # ddpm, dpm: VP process; ncsn: VE
PROCESS_OF_VARIANT = {"ddpm": "vp", "dpm": "vp", "ncsn": "ve"}
# Lists owned by the modules that implement them (the config only offers them).
DIFFUSION_LOSSES = losses.DIFFUSION_LOSSES
VAR_TYPES = processes.VAR_TYPES
LOSS_WEIGHTINGS = losses.LOSS_WEIGHTINGS
DECODERS = losses.DECODERS
NETWORKS = ("unet", "mlp", "analytic", "ncsn", "ncsnv2", "ncsnv2_deeper", "ncsnv2_deepest")
REFINENETS = ("ncsn", "ncsnv2", "ncsnv2_deeper", "ncsnv2_deepest")   # models/refinenet.py
DTYPES = ("float32", "bfloat16")
NOISE_INPUTS = ("index", "log_sigma")
OPTIMIZERS = ("adam", "adamw", "rmsprop")
LR_SCHEDULES = ("constant", "exponential", "cosine")
SAMPLERS = samplers.SAMPLERS                     # the sampler registry (its keys)
SKIP_TYPES = ddim.SKIP_TYPES
LANGEVIN_FORMS = langevin.LANGEVIN_FORMS
PREDICTORS = pc.PREDICTORS
DPM_SKIPS = dpm_solver.SKIPS
ODE_SOLVERS = ode.SOLVERS
PROBES = ("rademacher", "gaussian")
SAMPLER_INITS = ("prior", "uniform")
BINARIZATIONS = ("none", "dynamic")
QUANTIZATIONS = ("truncate", "round")
VAE_OBJECTIVES = ("elbo", "iwae")
VAE_NETWORKS = ("mlp_vae",)
VAE_ACTIVATIONS = ("relu", "swish", "tanh")
VAE_OUTPUTS = ("mean", "bernoulli")
GROUPNORM_GROUPS = 32
# Schedules that read both beta_start and beta_end (so need beta_start < beta_end).
_BETA_RANGE_SCHEDULES = ("linear", "quad", "warmup10", "warmup50", "sigmoid", "scaled_linear")


# ---------------------------------------------------------------------------
# Field declarations and value checks
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rule:
  """A range rule on a number: ``test(value)`` must hold; ``text`` says what it must be."""
  test: Callable[[Any], bool]
  text: str


POSITIVE = Rule(lambda v: v > 0, "> 0")
NONNEGATIVE = Rule(lambda v: v >= 0, ">= 0")
AT_LEAST_1 = Rule(lambda v: v >= 1, ">= 1")
AT_LEAST_2 = Rule(lambda v: v >= 2, ">= 2")
OPEN_UNIT = Rule(lambda v: 0 < v < 1, "in (0, 1)")
HALF_OPEN_UNIT = Rule(lambda v: 0 <= v < 1, "in [0, 1)")
DECAY_RATE = Rule(lambda v: 0 < v <= 1, "in (0, 1]")


def field(default, doc: str, *, choices: Optional[Tuple] = None,
          rule: Optional[Rule] = None):
  """A config field: its default, a one-line ``doc``, allowed ``choices`` or a range ``rule``."""
  return dataclasses.field(default=default,
                           metadata={"doc": doc, "choices": choices, "rule": rule})


def _is_int(v) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v) -> bool:
  return (isinstance(v, (int, float, np.integer, np.floating))
          and not isinstance(v, (bool, np.bool_)))


def _describe(kind) -> str:
  """English for a field type, used in error messages."""
  if kind is bool:
    return "True or False"
  if kind is int:
    return "an integer"
  if kind is float:
    return "a finite number"
  if kind is str:
    return "a string"
  inner = typing.get_args(kind)[0]
  if typing.get_origin(inner) is tuple:
    return "a tuple of tuples of numbers"
  return f"a tuple of {'integers' if inner is int else 'numbers'}"


def _coerce(path: str, value, kind, meta: Mapping[str, Any]):
  """``value`` as the field's type (lists become tuples), or ConfigError naming ``path``."""
  rule, choices = meta.get("rule"), meta.get("choices")

  def fail(what: str):
    raise ConfigError(f"{path}={value!r} is not valid; it must be {what}.")

  if choices is not None:
    check_choice(path, value, choices)
    return value
  if kind is bool:
    if not isinstance(value, (bool, np.bool_)):
      fail("True or False")
    return bool(value)
  if kind is str:
    if not isinstance(value, str):
      fail("a string")
    return value
  if kind in (int, float):
    ok = _is_int(value) if kind is int else (_is_number(value) and math.isfinite(value))
    if ok and rule is not None:
      ok = bool(rule.test(value))
    if not ok:
      fail(_describe(kind) + (f" {rule.text}" if rule else ""))
    return int(value) if kind is int else float(value)
  # Tuples: Tuple[int, ...], Tuple[float, ...] or Tuple[Tuple[float, ...], ...].
  inner = typing.get_args(kind)[0]
  if not isinstance(value, (list, tuple)):
    fail(_describe(kind) + (f", each {rule.text}" if rule else ""))
  items = []
  for v in value:
    if typing.get_origin(inner) is tuple:
      if not isinstance(v, (list, tuple)) or not all(_is_number(u) and math.isfinite(u)
                                                     for u in v):
        fail(_describe(kind))
      items.append(tuple(float(u) for u in v))
      continue
    ok = _is_int(v) if inner is int else (_is_number(v) and math.isfinite(v))
    if not ok or (rule is not None and not rule.test(v)):
      fail(_describe(kind) + (f", each {rule.text}" if rule else ""))
    items.append(int(v) if inner is int else float(v))
  return tuple(items)


_HINTS: Dict[type, Dict[str, Any]] = {}


def _hints(cls) -> Dict[str, Any]:
  if cls not in _HINTS:
    _HINTS[cls] = typing.get_type_hints(cls)
  return _HINTS[cls]


def _items(cfg, path: str) -> Dict[str, Any]:
  """The key/value pairs of a ConfigDict, FrozenConfigDict or mapping."""
  if isinstance(cfg, (ml_collections.ConfigDict, ml_collections.FrozenConfigDict)):
    return {k: cfg[k] for k in cfg.keys()}
  if isinstance(cfg, Mapping):
    return dict(cfg)
  raise ConfigError(f"{path or 'config'} must be a ConfigDict, a dict or its dataclass; "
                    f"got {type(cfg).__name__}.")


class Section:
  """Mixin of every config dataclass: checked construction, ``parse`` and ``to_dict``.

  Subclasses are frozen dataclasses declared with :func:`field`; ``PATH`` is the
  section's dotted name used in messages (``diffusion``, ``eval.bpd``, or "" for a
  whole config). ``check`` holds the rules between fields of the section.
  """
  PATH: ClassVar[str] = ""

  def __post_init__(self):
    hints = _hints(type(self))
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      kind = hints[f.name]
      if isinstance(kind, type) and issubclass(kind, Section):
        value = kind.parse(value)
      else:
        value = _coerce(self._path(f.name), value, kind, f.metadata)
      object.__setattr__(self, f.name, value)
    self.check()

  def check(self) -> None:
    """Rules between the fields of this section (ConfigError naming a field)."""

  @classmethod
  def _path(cls, name: str) -> str:
    return f"{cls.PATH}.{name}" if cls.PATH else name

  @classmethod
  def base_for(cls, values: Mapping[str, Any]) -> "Section":
    """The defaults that fill in fields missing from ``values`` (a hook for presets)."""
    del values
    return cls()

  @classmethod
  def rebase(cls, base: "Section", values: Mapping[str, Any]) -> "Section":
    """``base`` adjusted to ``values`` (a hook: a changed dataset brings its own size)."""
    del values
    return base

  @classmethod
  def parse(cls, cfg=None, base: Optional["Section"] = None):
    """The section from a ConfigDict, a dict, an instance or None (all defaults).

    Missing fields come from ``base`` (default: :meth:`base_for`); an unknown key
    raises ConfigError naming it and the closest field.
    """
    if isinstance(cfg, cls):
      return cfg
    if isinstance(cfg, Section):
      raise ConfigError(f"{cls.PATH or 'config'} got a {type(cfg).__name__}; expected "
                        f"{cls.__name__}.")
    values = {} if cfg is None else _items(cfg, cls.PATH)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
      if key not in names:
        raise ConfigError(
            f"{cls._path(key)} is not a config field{did_you_mean(key, names)}; the "
            f"{cls.PATH or 'top level'} section has: {', '.join(names)}.")
    base = cls.base_for(values) if base is None else cls.rebase(base, values)
    sub = {}
    for f in dataclasses.fields(cls):
      kind = _hints(cls)[f.name]
      if f.name in values and isinstance(kind, type) and issubclass(kind, Section):
        sub[f.name] = kind.parse(values.pop(f.name), base=getattr(base, f.name))
    return dataclasses.replace(base, **values, **sub)

  def replace(self, **changes):
    """A copy with ``changes`` applied (checked like a new section)."""
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> Dict[str, Any]:
    """Plain nested dict of the section (tuples stay tuples)."""
    out = {}
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      out[f.name] = value.to_dict() if isinstance(value, Section) else value
    return out

  @classmethod
  def field_docs(cls) -> Dict[str, str]:
    """{dotted path: doc} of every field, sub-sections included (README reference)."""
    out = {}
    for f in dataclasses.fields(cls):
      kind = _hints(cls)[f.name]
      if isinstance(kind, type) and issubclass(kind, Section):
        out.update(kind.field_docs())
      else:
        out[cls._path(f.name)] = f.metadata.get("doc", "")
    return out


def _fail(path: str, value, why: str):
  raise ConfigError(f"{path}={value!r} is not valid; {why}.")


# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DiffusionConfig(Section):
  """The forward process, its schedule and the training loss (defaults: DDPM)."""
  PATH: ClassVar[str] = "diffusion"
  variant: str = field("ddpm", "ddpm, dpm (VP process) or ncsn (VE process)", choices=VARIANTS)
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
                    "kl (L_vlb)", choices=DIFFUSION_LOSSES)
  var_type: str = field("fixedlarge", "reverse variance: fixedlarge, fixedsmall, "
                        "learned_range (the model outputs 2C channels)", choices=VAR_TYPES)
  hybrid_lambda: float = field(0.001, "lambda of the hybrid loss (Improved DDPM)",
                               rule=NONNEGATIVE)
  loss_weighting: str = field("none", "per-t weight of the eps-MSE: none, snr, min_snr_5",
                              choices=LOSS_WEIGHTINGS)
  clip_x0: bool = field(False, "clip x0_hat inside the training bound (the DDPM code does not)")
  decoder: str = field("discretized", "t = 0 term of the bound: discretized (8-bit images, "
                       "DDPM eq. 13) or gaussian (a density, for continuous data)",
                       choices=DECODERS)

  @property
  def process_kind(self) -> str:
    """``vp`` or ``ve``: the process this variant uses."""
    return PROCESS_OF_VARIANT[self.variant]

  @classmethod
  def base_for(cls, values):
    """A partial section takes its variant's paper defaults for what it leaves out."""
    variant = values.get("variant", "ddpm")
    check_choice("diffusion.variant", variant, VARIANTS)
    return cls(**VARIANT_PRESETS[variant].get("diffusion", {}))

  def check(self):
    vp = self.process_kind == "vp"
    allowed = schedules.BETA_SCHEDULES if vp else schedules.SIGMA_SCHEDULES
    if self.schedule not in allowed:
      _fail("diffusion.schedule", self.schedule,
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
      _fail("diffusion.beta_start", self.beta_start,
            f"it must be below diffusion.beta_end={self.beta_end!r}")
    if not self.sigma_min < self.sigma_max:
      _fail("diffusion.sigma_min", self.sigma_min,
            f"it must be below diffusion.sigma_max={self.sigma_max!r}")
    # The schedule's own limits (e.g. betas outside (0, 1] for a short jsd).
    if vp:
      schedules.get_beta_schedule(self.schedule, self.num_timesteps, self.beta_start,
                                  self.beta_end, self.cosine_s)
    else:
      schedules.geometric_sigmas(self.sigma_min, self.sigma_max, self.num_timesteps)


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
      _fail("data.binarize", self.binarize, "binarized pixels are {0, 1}: set data.centered="
            "False and data.uniform_dequantization=False")
    k = len(self.mixture_weights)
    if k == 0 or sum(self.mixture_weights) <= 0:
      _fail("data.mixture_weights", self.mixture_weights,
            "give non-negative numbers with a positive sum")
    dims = {len(m) for m in self.mixture_means}
    if len(self.mixture_means) != k or len(dims) != 1 or 0 in dims:
      _fail("data.mixture_means", self.mixture_means,
            f"give {k} means (one per weight) of one dimension D, as [K, D]")
    if len(self.mixture_stds) != k:
      _fail("data.mixture_stds", self.mixture_stds,
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
class ModelConfig(Section):
  """The ε-network (defaults: the DDPM CIFAR-10 U-Net, 35,746,307 parameters)."""
  PATH: ClassVar[str] = "model"
  name: str = field("unet", "unet (DDPM U-Net), mlp (2-D data), analytic (exact eps of "
                    "data.mixture_*, no parameters), ncsn (NCSN's conditional RefineNet), ncsnv2, "
                    "ncsnv2_deeper, ncsnv2_deepest (NCSNv2's RefineNets)", choices=NETWORKS)
  ch: int = field(128, "U-Net base channels (a multiple of 32 for GroupNorm)", rule=AT_LEAST_1)
  ch_mult: Tuple[int, ...] = field((1, 2, 2, 2), "U-Net channel multiplier per resolution",
                                   rule=AT_LEAST_1)
  num_res_blocks: int = field(2, "U-Net ResBlocks per resolution (down path)", rule=AT_LEAST_1)
  attn_resolutions: Tuple[int, ...] = field((16,), "U-Net resolutions with self-attention",
                                            rule=AT_LEAST_1)
  dropout: float = field(0.1, "dropout in the U-Net ResBlocks", rule=HALF_OPEN_UNIT)
  resamp_with_conv: bool = field(True, "convolutions in the U-Net's up/down-sampling")
  out_channels: int = field(3, "output channels: C, or 2C with learned_range", rule=AT_LEAST_1)
  conditional: bool = field(True, "False: the network ignores the noise level")
  cond: str = field("index", "noise-level input: index (t) or log_sigma (VE only)",
                    choices=NOISE_INPUTS)
  scale_by_sigma: bool = field(False, "NCSNv2 technique 3: read the output as s(x)/sigma")
  rescale_inputs: bool = field(False, "feed the network 2x - 1 (NCSN codes, for data in "
                               "[0, 1]); the data and the noise stay in data space")
  dtype: str = field("float32", "compute dtype (parameters stay float32)", choices=DTYPES)
  hidden_dims: Tuple[int, ...] = field((128, 128, 128), "MLP hidden widths", rule=AT_LEAST_1)
  ngf: int = field(128, "RefineNet base width (NCSN, NCSNv2: 128; NCSN MNIST: 64)",
                   rule=AT_LEAST_1)

  def check(self):
    if self.name == "unet":
      if not self.ch_mult:
        _fail("model.ch_mult", self.ch_mult, "give one positive multiplier per resolution, "
              "e.g. (1, 2, 2, 2)")
      if self.ch % GROUPNORM_GROUPS:
        _fail("model.ch", self.ch, f"it must be a multiple of {GROUPNORM_GROUPS} (GroupNorm "
              "groups)")
    if self.name == "mlp" and not self.hidden_dims:
      _fail("model.hidden_dims", self.hidden_dims, "give at least one hidden width")


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
      _fail("optim.min_lr", self.min_lr, f"it must not exceed optim.lr={self.lr!r}")
    if self.lr_schedule != "constant" and self.decay_steps == 0:
      _fail("optim.decay_steps", self.decay_steps,
            f"optim.lr_schedule={self.lr_schedule!r} needs decay_steps > 0")
    if self.lr_schedule == "constant" and self.decay_steps > 0:
      _fail("optim.decay_steps", self.decay_steps,
            "it has no effect with optim.lr_schedule='constant'; set optim.lr_schedule="
            "'exponential' or 'cosine', or decay_steps=0")
    if self.weight_decay > 0 and self.optimizer != "adamw":
      _fail("optim.weight_decay", self.weight_decay,
            f"optim.optimizer={self.optimizer!r} has no weight decay; use 'adamw'")


WRITERS = ("jsonl", "tensorboard", "wandb")


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
  # A grid is a look at the model while it trains, not a measurement: it need not pay for
  # the paper's 1,000-step chain (six silent minutes at the end of an MNIST run).
  # DDPM's grids take DDIM's 50 steps (Song et al. 2020, Table 1: FID 4.67 against the
  # 1,000-step chain's 3.17 on CIFAR-10), 20x fewer network evaluations.
  grid_method: str = field("ddim", "sampler of the grids drawn while training ('' = "
                           "sampling.method and sampling.num_steps); sample.py, evaluations "
                           "and reproductions always use config.sampling",
                           choices=("",) + tuple(SAMPLERS))
  grid_steps: int = field(50, "steps of training.grid_method (0 = all levels; at most the "
                          "process's levels)", rule=NONNEGATIVE)

  def check(self):
    bad = [w for w in self.writers.split(",") if w.strip() not in WRITERS]
    if bad or not self.writers.strip():
      _fail("training.writers", self.writers,
            f"it must be a comma-separated list of {', '.join(WRITERS)}")
    k = self.steps_per_call
    for name in ("num_train_steps", "log_every", "checkpoint_every", "sample_every"):
      if getattr(self, name) % k:
        _fail(f"training.{name}", getattr(self, name),
              f"it must be a multiple of training.steps_per_call={k}: events happen between "
              "compiled calls")


@dataclasses.dataclass(frozen=True)
class SamplingConfig(Section):
  """How samples are drawn (defaults: DDPM's ancestral sampler with fixedlarge variance)."""
  PATH: ClassVar[str] = "sampling"
  method: str = field("ancestral", f"{', '.join(SAMPLERS)} (README: Sampling)", choices=SAMPLERS)
  num_steps: int = field(0, "levels visited (0 = all; ancestral < T respaces, ddim: S)",
                         rule=NONNEGATIVE)
  skip_type: str = field("uniform", "DDIM step selection: uniform or quad", choices=SKIP_TYPES)
  eta: float = field(0.0, "DDIM noise (0 deterministic, 1 = the DDPM posterior)",
                     rule=NONNEGATIVE)
  n_steps_each: int = field(100, "Langevin steps per sigma level", rule=AT_LEAST_1)
  step_size: float = field(2e-5, "Langevin epsilon (NCSN code: 2e-5)", rule=POSITIVE)
  langevin_form: str = field("code", "code: x + a s + sqrt(2a) z; paper: x + a/2 s + sqrt(a) z",
                             choices=LANGEVIN_FORMS)
  denoise: bool = field(False, "final denoising step: NCSNv2 (annealed_langevin); ode, "
                        "dpm_solver: one Tweedie step from level 0 to x0_hat (+1 NFE)")
  init: str = field("prior", "x_T: prior (N(0, I) or N(0, sigma_max^2 I)) or uniform U[0, 1]",
                    choices=SAMPLER_INITS)
  clip_x0: bool = field(True, "clip x0_hat to the data range (ancestral, ddim, dpm_solver)")
  var_type: str = field("fixedlarge", "ancestral variance: fixedlarge (VP: beta_t; VE: "
                        "sigma_t^2 - sigma_{t-1}^2, score_sde's reverse diffusion) or fixedsmall "
                        "(the posterior's; VE: score_sde's ancestral sampling); learned_range "
                        "is automatic for 2C-output models", choices=VAR_TYPES)
  quantize: str = field("truncate", "samples to uint8: truncate (improved-diffusion, score_sde: "
                        "uint8(clip(255 x))) or round", choices=QUANTIZATIONS)
  batch_size: int = field(256, "samples per compiled call", rule=AT_LEAST_1)
  # pc (score_sde, Song et al. 2021)
  predictor: str = field("reverse_diffusion", "pc predictor: reverse_diffusion or "
                         "euler_maruyama (score_sde)", choices=PREDICTORS)
  n_corrector: int = field(1, "pc Langevin corrector steps per level (score_sde: 1)",
                           rule=NONNEGATIVE)
  snr: float = field(0.16, "pc corrector signal-to-noise ratio r (score_sde CIFAR-10: 0.16)",
                     rule=POSITIVE)
  # ode (probability flow, diffrax)
  ode_solver: str = field("tsit5", "ode adaptive solver: tsit5 or dopri5", choices=ODE_SOLVERS)
  rtol: float = field(1e-5, "ode relative tolerance (score_sde RK45: 1e-5)", rule=POSITIVE)
  atol: float = field(1e-5, "ode absolute tolerance (score_sde RK45: 1e-5)", rule=POSITIVE)
  # dpm_solver (DPM-Solver++, Lu et al. 2022)
  dpm_skip: str = field("logsnr", "dpm_solver time steps: logsnr, time_uniform or "
                        "time_quadratic (DPM-Solver's skip_type)", choices=DPM_SKIPS)
  # heun (EDM, Karras et al. 2022)
  rho: float = field(7.0, "heun sigma-step exponent rho (EDM: 7)", rule=POSITIVE)
  s_churn: float = field(0.0, "heun stochasticity S_churn (0 = deterministic Alg. 1)",
                         rule=NONNEGATIVE)
  s_tmin: float = field(0.0, "heun: churn only where sigma >= S_tmin", rule=NONNEGATIVE)
  s_tmax: float = field(1e30, "heun: churn only where sigma <= S_tmax (1e30 = no limit)",
                        rule=NONNEGATIVE)
  s_noise: float = field(1.0, "heun churn noise scale S_noise (EDM: 1.0-1.007)",
                         rule=POSITIVE)


@dataclasses.dataclass(frozen=True)
class BpdEvalConfig(Section):
  """Bits/dim: DDPM's calc_bpd_loop on the eval split (VP processes, 8-bit images)."""
  PATH: ClassVar[str] = "eval.bpd"
  every: int = field(0, "training steps between evaluations (0 = never)", rule=NONNEGATIVE)
  num_examples: int = field(256, "test images scored", rule=AT_LEAST_1)
  batch_size: int = field(256, "images per compiled call", rule=AT_LEAST_1)


@dataclasses.dataclass(frozen=True)
class FidEvalConfig(Section):
  """FID / IS / KID in the FID Inception network's features against the training split."""
  PATH: ClassVar[str] = "eval.fid"
  every: int = field(0, "training steps between evaluations (0 = never)", rule=NONNEGATIVE)
  num_samples: int = field(50_000, "samples scored (papers: 50,000)", rule=AT_LEAST_2)
  batch_size: int = field(256, "samples per compiled sampling call", rule=AT_LEAST_1)
  inception_weights: str = field("", "converted pt_inception-2015-12-05 weights (.npz)")

  def check(self):
    if self.every and not self.inception_weights:
      _fail("eval.fid.every", self.every, "FID needs eval.fid.inception_weights, the converted "
            "FID Inception weights (.npz); see the README's 'Sampling and evaluation'")


@dataclasses.dataclass(frozen=True)
class ClassifierFidEvalConfig(Section):
  """Fréchet distance in the features of a small classifier trained here on the dataset
  (digits, MNIST, Fashion-MNIST, CIFAR-10), with the real-data floor and class coverage."""
  PATH: ClassVar[str] = "eval.classifier_fid"
  every: int = field(0, "training steps between evaluations (0 = never)", rule=NONNEGATIVE)
  num_samples: int = field(10_000, "samples scored (the floor uses as many test images, at "
                           "most the split)", rule=AT_LEAST_2)
  batch_size: int = field(256, "samples per compiled sampling call", rule=AT_LEAST_1)
  confidence: float = field(0.9, "a sample is confident when the classifier gives one class "
                            "at least this probability", rule=OPEN_UNIT)


@dataclasses.dataclass(frozen=True)
class OdeBpdEvalConfig(Section):
  """Exact bits/dim through the probability-flow ODE (score_sde), Hutchinson trace."""
  PATH: ClassVar[str] = "eval.ode_bpd"
  every: int = field(0, "training steps between evaluations (0 = never)", rule=NONNEGATIVE)
  num_examples: int = field(256, "test images scored", rule=AT_LEAST_1)
  batch_size: int = field(64, "images per compiled call", rule=AT_LEAST_1)
  num_probes: int = field(1, "Hutchinson probes per image (score_sde: 1)", rule=AT_LEAST_1)
  probe: str = field("rademacher", "trace probe: rademacher or gaussian", choices=PROBES)
  rtol: float = field(1e-5, "ODE relative tolerance (score_sde: 1e-5)", rule=POSITIVE)
  atol: float = field(1e-5, "ODE absolute tolerance (score_sde: 1e-5)", rule=POSITIVE)
  ode_solver: str = field("tsit5", "adaptive solver: tsit5 or dopri5", choices=ODE_SOLVERS)


@dataclasses.dataclass(frozen=True)
class DiffusionEvalConfig(Section):
  """The evaluators of the diffusion family, each with its own cadence."""
  PATH: ClassVar[str] = "eval"
  bpd: BpdEvalConfig = BpdEvalConfig()
  fid: FidEvalConfig = FidEvalConfig()
  classifier_fid: ClassifierFidEvalConfig = ClassifierFidEvalConfig()
  ode_bpd: OdeBpdEvalConfig = OdeBpdEvalConfig()


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
               _items(diffusion, "diffusion").get("variant", "ddpm") if diffusion is not None
               else "ddpm")
    check_choice("diffusion.variant", variant, VARIANTS)
    return default_config(variant)


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
      _fail("vae.kl_weight", self.kl_weight, "the iwae objective has no KL weight; use "
            "vae.objective='elbo' for a beta-VAE")


@dataclasses.dataclass(frozen=True)
class VAEModelConfig(Section):
  """MLP encoder q(z|x) (diagonal Gaussian) and decoder p(x|z) (Bernoulli logits)."""
  PATH: ClassVar[str] = "model"
  name: str = field("mlp_vae", "mlp_vae (Kingma & Welling 2013, App. C.2)",
                    choices=VAE_NETWORKS)
  latent_dim: int = field(128, "dimension L of z (2 draws the latent manifold)", rule=AT_LEAST_1)
  hidden_dims: Tuple[int, ...] = field((256, 256), "encoder widths (the decoder mirrors them)",
                                       rule=AT_LEAST_1)
  activation: str = field("relu", "relu, swish or tanh", choices=VAE_ACTIVATIONS)
  dtype: str = field("float32", "compute dtype (parameters stay float32)", choices=DTYPES)


@dataclasses.dataclass(frozen=True)
class VAESamplingConfig(Section):
  """What a VAE sample is: the decoded mean of z ~ N(0, I), or a Bernoulli draw from it."""
  PATH: ClassVar[str] = "sampling"
  output: str = field("mean", "mean: sigmoid(logits) (grey); bernoulli: a {0, 1} draw",
                      choices=VAE_OUTPUTS)
  batch_size: int = field(256, "samples per compiled call", rule=AT_LEAST_1)


@dataclasses.dataclass(frozen=True)
class ElboEvalConfig(Section):
  """Test ELBO and importance-weighted log p(x) (Burda et al. 2016) on the fixed
  binarization of the eval split, in nats and bits/dim."""
  PATH: ClassVar[str] = "eval.elbo"
  every: int = field(0, "training steps between evaluations (0 = never)", rule=NONNEGATIVE)
  num_examples: int = field(10_000, "test images scored (at most the split)", rule=AT_LEAST_1)
  iw_samples: int = field(1000, "k of the importance-weighted estimate of log p(x)",
                          rule=AT_LEAST_1)
  batch_size: int = field(100, "test images per compiled call", rule=AT_LEAST_1)


@dataclasses.dataclass(frozen=True)
class VAEEvalConfig(Section):
  """The evaluators of the VAE family."""
  PATH: ClassVar[str] = "eval"
  elbo: ElboEvalConfig = ElboEvalConfig()
  classifier_fid: ClassifierFidEvalConfig = ClassifierFidEvalConfig()


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
    return default_config("vae")


RUN_CONFIGS = {"diffusion": DiffusionRunConfig, "vae": VAERunConfig}

# The papers' choices per variant, as changes to the dataclass defaults (which are DDPM's).
VARIANT_PRESETS: Dict[str, Dict[str, Dict[str, Any]]] = {
    # Ho et al. 2020: VP, linear beta 1e-4 -> 0.02, T = 1000, L_simple, ancestral
    # sampling with fixedlarge variance (grids while training: DDIM 50): the dataclass
    # defaults.
    "ddpm": {},
    # Song & Ermon 2019: VE, geometric sigma 1 -> 0.01, L = 10, DSM with
    # lambda(sigma) = sigma^2 (= eps-MSE), data in [0, 1] dequantized, annealed Langevin.
    "ncsn": {
        "diffusion": dict(variant="ncsn", schedule="geometric", num_timesteps=10),
        "data": dict(centered=False, uniform_dequantization=True),
        # Both NCSN codes map their [0, 1] inputs to 2x - 1 inside the network and use no
        # dropout (ncsn models/cond_refinenet_dilated.py, ncsnv2 models/ncsnv2.py).
        "model": dict(rescale_inputs=True, dropout=0.0),
        "sampling": dict(method="annealed_langevin"),
        # Grids with annealed Langevin too: NCSN's ladders (L = 10) are shorter than 50 steps.
        "training": dict(grid_method="", grid_steps=0),
    },
    # Sohl-Dickstein et al. 2015: VP with the DPM code's fixed schedule, learned reverse
    # variance, trained on the variational bound. Not dequantized: the bound's t = 0
    # term is DDPM's discretized decoder on the 8-bit pixels.
    "dpm": {
        "diffusion": dict(variant="dpm", schedule="dpm", loss="kl", var_type="learned_range"),
        # The DPM code (train.py) steps with RemoveNotFinite + RMSProp: no clipping.
        "optim": dict(grad_clip=0.0),
        # Grids with the learned-variance ancestral chain (DDIM would ignore the variance).
        "training": dict(grid_method="", grid_steps=0),
    },
    # Kingma & Welling 2013: a mean-field VAE on dynamically binarized MNIST, Adam with a
    # cosine decay (the defaults of configs/vae/mnist.py refine this).
    "vae": {
        "family": "vae",
        "data": dict(dataset="mnist", image_size=28, num_channels=1, centered=False,
                     random_flip=False, binarize="dynamic"),
        "optim": dict(lr=1e-3, warmup_steps=0, grad_clip=0.0, lr_schedule="cosine",
                      decay_steps=100_000, min_lr=1e-5),
        "training": dict(num_train_steps=100_000, batch_size=128, ema_decay=0.0,
                         log_every=500, checkpoint_every=10_000, sample_every=20_000,
                         grid_method="", grid_steps=0),   # grids: decoder means
    },
}


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


def grid_sampling(config) -> Optional["SamplingConfig"]:
  """The sampling section of the grids drawn while training: ``config.sampling`` with
  ``training.grid_method`` / ``grid_steps`` when a grid method is set (diffusion runs
  only; None for the VAE, whose grids are decoder means)."""
  if config.family != "diffusion":
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
  run_cls = RUN_CONFIGS[preset.get("family", "diffusion")]
  sections = {}
  for f in dataclasses.fields(run_cls):
    if f.name in preset and f.name != "family":
      sections[f.name] = _hints(run_cls)[f.name](**preset[f.name])
  return run_cls(**sections)


def parse_config(config):
  """The typed whole config from a ConfigDict / dict (sections may be left out)."""
  if isinstance(config, Section):
    return config
  values = _items(config, "")
  family = values.get("family", "diffusion")
  check_choice("family", family, FAMILIES)
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

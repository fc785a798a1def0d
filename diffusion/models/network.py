"""What a network plug-in declares: its constructor, its options and its rules.

A :class:`Network` is the registry entry of one ``model.name``
(:data:`diffusion.models.NETWORKS`):

  build(<context>, *, <options>) -> a Flax module. The keyword-only parameters are its
      ``model.<option>`` fields, with their defaults; the positional ones ask for
      context that is not a model option (:data:`CONTEXT`), which the caller passes.
  options: ``options.declare(build, ...)``: each option's one-line doc, choices or rule.
  check(options): rules between its own options (ConfigError naming ``model.<field>``).
  fits(options, dataset, example_shape, process_kind): rules against the data it is
      trained on and the process (image vs points, image-size divisibility, ...).
  convolutional: whether it convolves (:mod:`diffusion.xla_cpu` times the CPU's
      convolution kernels only for such networks).

The config's flat ``model`` section is the union of the registered networks' options
(options several networks read, e.g. ``out_channels``, are declared once here).
"""

import dataclasses
import inspect
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import jax.numpy as jnp

from diffusion.options import AT_LEAST_1, Option

# Compute dtypes by name (the one list: ``model.dtype`` takes its keys).
DTYPES: Dict[str, Any] = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

# Options several networks read, declared once so their declarations agree.
OUT_CHANNELS = Option("output channels: C, or 2C with learned_range", rule=AT_LEAST_1)
CONDITIONAL = Option("False: the network ignores the noise level")
DTYPE = Option("compute dtype (parameters stay float32)", choices=DTYPES)

# What a constructor may ask for besides its options (positional parameters of ``build``),
# and the fix when it is missing.
CONTEXT = {
    "num_levels": "the number of noise levels (make_model(..., num_levels=L), "
                  "L = diffusion.num_timesteps)",
    "mixture": "the data config (data.mixture_weights, data.mixture_means, data.mixture_stds): "
               "call make_model(..., data_cfg=)",
}


@dataclasses.dataclass(frozen=True)
class Network:
  """One ``model.name``: see the module docstring."""
  description: str
  build: Callable[..., Any]
  options: Mapping[str, Option]
  check: Optional[Callable[[Mapping[str, Any]], None]] = None
  fits: Optional[Callable[..., None]] = None
  convolutional: bool = True   # False: no convolution (the CPU kernel choice skips it)

  @property
  def context(self) -> Tuple[str, ...]:
    """The :data:`CONTEXT` names ``build`` asks for (its positional parameters)."""
    params = inspect.signature(self.build).parameters.values()
    names = tuple(p.name for p in params
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    unknown = [n for n in names if n not in CONTEXT]
    if unknown:
      raise TypeError(f"{self.build.__qualname__} asks for {unknown}; a network's context is "
                      f"one of {sorted(CONTEXT)}.")
    return names


def image_side(example_shape: Tuple[int, ...]) -> Optional[int]:
  """H of an image example (H, W, C), None for points (D,)."""
  return int(example_shape[0]) if len(example_shape) == 3 else None

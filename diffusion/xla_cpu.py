"""The project's XLA:CPU setting: convolutions on XLA's own (Eigen) kernels.

jax 0.10's XLA:CPU hands every top-level convolution to YNNPACK (``__ynn_fusion``
custom fusions in the optimized HLO). For the convolutions of a diffusion U-Net's
training step (3x3, 32x32 down to 4x4, 128-512 channels, forward and both backward
convolutions) XLA's Eigen kernels are faster on the 2-core AMD EPYC machines this
project is developed on: the DDPM CIFAR-10 U-Net's step at batch 8 took 0.68x the time
(``benchmarks/cpu_levers.py``, BENCHMARKS.md). :func:`configure` turns the offload off
by adding ``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`` to
``XLA_FLAGS``. It has to run before JAX starts its CPU backend (the flags are read
once, then); the command lines (``train.py``, ``sample.py``, ``python -m
diffusion.reproduce``, the benchmarks) and the test suite call it first thing, and a
library user calls it before the first computation.

It changes only which kernel computes a convolution, so results agree with the YNNPACK
path to float32 rounding. It does nothing when:

* ``DIFFUSION_EIGEN_CONVOLUTIONS=0`` (XLA's own choice, e.g. to compare);
* ``XLA_FLAGS`` already sets ``--xla_cpu_experimental_ynn_fusion_type`` (yours wins);
* the installed jaxlib is not a version the flag is known for (an unknown flag makes
  XLA abort at start-up, so a newer jaxlib runs with XLA's defaults until checked);
* JAX's backends are already running (then it warns: set the variable earlier).
"""

import os
import warnings

import jaxlib

try:  # JAX has no public call that says whether its backends started (0.10 to 0.12).
  from jax._src.xla_bridge import backends_are_initialized
except ImportError:  # a JAX that moved it: assume not started (the flag is then harmless)
  def backends_are_initialized() -> bool:
    return False

FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
# jaxlib versions whose XLA has this flag (checked by reading the flag list of each).
KNOWN_JAXLIB = ("0.10.",)


def configure() -> bool:
  """Adds :data:`FLAG` to ``XLA_FLAGS`` when it applies (see the module docstring);
  returns whether the flag is in effect for this process."""
  current = os.environ.get("XLA_FLAGS", "")
  if "xla_cpu_experimental_ynn_fusion_type" in current:
    return FLAG in current.split()
  if os.environ.get("DIFFUSION_EIGEN_CONVOLUTIONS", "1") == "0":
    return False
  if not jaxlib.__version__.startswith(KNOWN_JAXLIB):
    return False
  if backends_are_initialized():
    warnings.warn("diffusion.xla_cpu.configure() ran after JAX started its backends; "
                  f"to use it, call it before the first computation or set XLA_FLAGS={FLAG}.",
                  stacklevel=2)
    return False
  os.environ["XLA_FLAGS"] = f"{current} {FLAG}".strip()
  return True

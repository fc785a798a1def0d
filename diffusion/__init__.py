"""Diffusion generative models in JAX: DPM, NCSN and DDPM on one mathematical core.

Public API (README "Python API"; every function that takes a config section
accepts a ConfigDict, a plain dict or the typed dataclass of :mod:`diffusion.config`):
  load(workdir, step=-1) -> Run   a run's config and EMA params; run.eps(x_t, t),
                                  run.sample(num, seed=, **sampling), run.encode/decode
  make_process(config.diffusion)  -> VP or VE process (a JAX pytree)
  make_model(config.model)        -> Flax network predicting eps (or eps and variance)
  make_eps_fn(module, params, process, config.model) -> eps_fn(x_t, t)
  training_losses(process, eps_fn, x0, t, noise, config.diffusion) -> per-example losses
  sample(eps_fn, process, shape, key, config.sampling) -> samples
  make_source(config.data)        -> data source (device-resident or streaming)
  make_family(config)             -> the model family: init, loss_fn, sample_fn
  train(config, workdir)          -> trains or resumes a run
  generate(config, workdir, num_samples=, seed=, evals=, ...)  -> what sample.py does:
                                  samples, meta.json and evaluations in an output folder

Importing this package does not import TensorFlow.
"""

import sys as _sys

from diffusion import cli

# First, before JAX loads: a command that is starting (train.py, sample.py, python -m
# diffusion.<command>) ends in one line if a signal comes while the libraries load.
if cli.is_starting_command(_sys.argv):
  cli.preamble()

from diffusion.api import (  # noqa: E402
    Run, load, make_eps_fn, make_family, make_model, make_process, sample, training_losses)
from diffusion.config import parse_config  # noqa: E402
from diffusion.core.processes import VEProcess, VPProcess  # noqa: E402
from diffusion.data import make_source  # noqa: E402
from diffusion.errors import ConfigError  # noqa: E402
from diffusion.generate import generate  # noqa: E402
from diffusion.train.loop import train  # noqa: E402

__all__ = [
    "ConfigError", "Run", "VEProcess", "VPProcess", "generate", "load", "make_eps_fn",
    "make_family", "make_model", "make_process", "make_source", "parse_config", "sample",
    "train", "training_losses",
]

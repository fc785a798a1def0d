"""How a family's samples were drawn, in the words ``generate`` (``sample.py``) writes.

A family answers :class:`SamplingRecord` for its sampling settings, so the code that
names an output folder, prints what it samples and writes ``meta.json`` never asks
which family, sampler or network it runs.
"""

import dataclasses
from typing import Dict


@dataclasses.dataclass(frozen=True)
class SamplingRecord:
  """What names and describes one way of sampling a model.

  Attributes:
    sampler: the sampler's name (a diffusion ``sampling.method``; a VAE's
      ``sampling.output``); meta.json's ``sampler``.
    steps: network evaluations per sample's chain as sampled (a diffusion run's levels
      visited, 0 = every level resolved; 1 decoder pass for a VAE); meta.json's ``steps``.
    phrase: what follows "sampling N with <sampler>, " on the console, e.g. "10 steps of
      100 levels (--steps=10)".
    name: the part of the output folder after ``samples_<step>_``, before ``_seed<seed>``,
      e.g. ``ddim_s10_eta0.5`` (everything that changes the samples).
    options: the sampler's options that change its samples, beyond steps (DDIM's
      ``{"eta": 0.5}``), also written to meta.json.
  """
  sampler: str
  steps: int
  phrase: str
  name: str
  options: Dict[str, float] = dataclasses.field(default_factory=dict)

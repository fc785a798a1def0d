"""Populations: P runs that differ only in population fields, trained as one program.

:func:`train_population` is what a ``--sweep_mode=vmap`` sweep calls. The loop is the
single run's (:func:`diffusion.train.loop.train_layout`); a :class:`Population` is the
layout it runs over, and holds everything a population changes: the members' train states stacked
along a population axis sharded over devices, the train step ``jax.vmap``-ed (or
``lax.map``-ped) over it, one data stream per member, a NaN/Inf loss that stops its
member only, and each member's lines prefixed with its name. Each member's workdir is
exactly what a single run writes (lock, config.json, checkpoints, metrics.jsonl, tb/,
samples/), and resumes the same way.
"""

import logging
import os
from typing import Callable, List, Optional, Sequence, Union

import jax
import numpy as np

from diffusion.config import checks
from diffusion.config import ModelConfig, program_key
from diffusion.errors import ConfigError
from diffusion.train import sharding
from diffusion.train.layout import Layout, Member
from diffusion.train.loop import train_layout

POPULATION_STRATEGIES = ("auto", "vmap", "map")


def population_strategy(strategy: str) -> str:
  """``vmap`` or ``map`` for a population; ``auto`` is vmap.

  vmap batches the members' computations into one program (the speed of a population
  on accelerators); ``map`` runs the members one after another inside the same compiled
  step (``lax.map``), which needs the memory of one member's step only. On XLA:CPU
  neither helps a convolutional network: a vmapped convolution whose weights differ
  per member becomes a grouped convolution, and loop bodies run convolutions slowly,
  so a digits U-Net population costs 4.5x (vmap) or 15x (map) one run's step per
  member (measured: BENCHMARKS.md); there ``--sweep_mode=sequential`` is faster, and
  the loop says so.
  """
  if strategy not in POPULATION_STRATEGIES:
    raise ConfigError(f"--population_strategy={strategy!r} is not valid; choose one of "
                      f"{', '.join(repr(s) for s in POPULATION_STRATEGIES)}.")
  return "vmap" if strategy == "auto" else strategy


def train_population(configs: Sequence, workdirs: Sequence[str], *, names=None,
                     progress: bool = True, devices=None,
                     strategy: str = "auto") -> List[Union[dict, Exception]]:
  """Trains P runs that differ only in :data:`diffusion.config.POPULATION_FIELDS`.

  For P > 1 the train step is ``jax.vmap``-ed over the stacked train states, one
  compiled program for all members, with the population axis sharded over the largest
  number of devices that divides P. P = 1 is a single run (data parallel over
  ``devices``) whose lines carry its name.

  ``strategy`` (:func:`population_strategy`): ``vmap``, or ``map`` (members one after
  another inside the same compiled step), or ``auto``.

  Returns:
    per member, its final metrics, or the exception that stopped it (a NaN/Inf
    loss in one member stops that member only).
  """
  if len(configs) != len(workdirs) or not configs:
    raise ValueError("train_population needs one workdir per config (at least one).")
  devices = jax.devices() if devices is None else list(devices)
  strategy = population_strategy(strategy)
  if len(configs) == 1:   # data parallel over every device, as train() would
    mesh = sharding.make_mesh(devices)
    cfg = checks.validate(configs[0], num_devices=mesh.size)
    return train_layout(_Named([Member(cfg, workdirs[0])], mesh, names), progress=progress)
  pop = len(configs)
  size = max(d for d in range(1, len(devices) + 1) if pop % d == 0)
  mesh = sharding.make_mesh(devices[:size], axis=sharding.POPULATION_AXIS)
  cfgs = [checks.validate(c, num_devices=1) for c in configs]
  _check_one_program(cfgs, names or workdirs)
  members = [Member(cfg, w) for cfg, w in zip(cfgs, workdirs)]
  convolutional = isinstance(cfgs[0].model, ModelConfig) and not cfgs[0].data.is_toy
  if mesh.devices.flat[0].platform == "cpu" and convolutional:   # the ε-networks of images
    logging.warning("a population of image networks (U-Net, RefineNet) on CPU runs slower "
                    "per member than one run (XLA:CPU grouped convolutions); "
                    "--sweep_mode=sequential is faster.")
  return train_layout(Population(members, mesh, names, strategy), progress=progress)


def _check_one_program(cfgs, names) -> None:
  """ValueError naming the first field (not a population field) in which members differ."""
  keys = [program_key(c) for c in cfgs]
  for name, key in zip(names[1:], keys[1:]):
    differ = [k for k in keys[0] if keys[0][k] != key.get(k)]
    if differ:
      raise ValueError(f"{name} differs from {names[0]} in {', '.join(differ[:3])}, which "
                       "change the compiled program; such points train in separate groups.")


class _Named(Layout):
  """The single run's layout, each member's lines starting with ``[name] `` (a sweep
  point's name) when names are given."""

  def __init__(self, members: List[Member], mesh, names: Optional[Sequence[str]]):
    super().__init__(members, mesh)
    self.names = list(names) if names else None

  def prefix(self, i: int) -> str:
    return f"[{self.names[i]}] " if self.names else ""


class Population(_Named):
  """P members stacked along the population axis of ``mesh``, stepped by ``strategy``
  (vmap or map) in one compiled program; a NaN/Inf loss stops its member only."""

  def __init__(self, members: List[Member], mesh, names: Optional[Sequence[str]],
               strategy: str = "vmap"):
    super().__init__(members, mesh, names)
    self.strategy = strategy

  def describe(self) -> str:
    return f"population of {len(self.members)} ({self.strategy}) | "

  def error_dir(self) -> str:
    """The sweep's folder, which holds every member's workdir."""
    return os.path.dirname(self.members[0].workdir)

  def restore(self, states):
    """A population resumes at one step: the oldest of its members' (from scratch if one
    has none); training is deterministic, so the members ahead redo their steps
    bit-identically."""
    restored = super().restore(states)
    steps = [step for _, step in restored]
    if len(set(steps)) > 1:
      common = None if None in steps else min(steps)
      restored = [(state, None) if common is None else (m.ckpt.restore(common, state), common)
                  for m, state in zip(self.members, states)]
    return restored

  def place(self, states):
    return sharding.shard_leading(_stack(sharding.to_host(states)), self.mesh)

  def member(self, tree, i: int):
    return jax.tree.map(lambda a: a[i], tree)

  def step_fn(self, step: Callable, shared_data: bool) -> Callable:
    # One program for all members: their differences are state arrays.
    return _population_step(step, self.strategy, shared_data)

  def next_batch(self, streams):
    return np.stack([next(s) for s in streams])   # [P, B, ...]: each member its own order

  def failed(self, i: int) -> None:
    print(f"{self.prefix(i)}error: {self.members[i].failure}", flush=True)


def _population_step(step_fn, strategy: str, shared_data: bool):
  """``step_fn`` over stacked member states: ``jax.vmap``, or ``lax.map`` (one member at
  a time within the program); ``shared_data``: every member draws from the same data."""
  if strategy == "vmap":
    return jax.vmap(step_fn, in_axes=(0, None if shared_data else 0))
  if shared_data:
    return lambda states, data: jax.lax.map(lambda s: step_fn(s, data), states)
  return lambda states, data: jax.lax.map(lambda sd: step_fn(*sd), (states, data))


def _stack(trees):
  """Member trees as one tree of [P, ...] host arrays."""
  return jax.tree.map(lambda *leaves: np.stack(leaves), *trees)

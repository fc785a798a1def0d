"""What the training loop runs over: its members (runs) and their layout on devices.

A :class:`Member` is one run: its typed config, family, workdir and what it has saved.
A :class:`Layout` answers each question the loop asks about where the members' arrays
live; here one run, its train state replicated over a data-parallel mesh.
:class:`diffusion.train.population.Population` answers them for P runs stacked along a
population axis, so the loop (:mod:`diffusion.train.loop`) has nothing specific to
populations.
"""

import functools
from typing import Any, Callable, Dict, List, Optional, Tuple

from jax.sharding import NamedSharding, PartitionSpec

from diffusion import families
from diffusion.train import sharding
from diffusion.train.step import TrainState


class Member:
  """One run of the loop: its config, family, workdir and what it has saved."""

  def __init__(self, cfg, workdir: str):
    self.cfg, self.workdir = cfg, workdir
    self.family = families.make_family(cfg)
    self.created = False                 # this call created the workdir
    self.started = False                 # a train call has completed in this process
    self.last_checkpoint = None          # newest complete checkpoint on disk
    self.done_step: Optional[int] = None  # the step of the newest finished train call
    self.grid: Optional[str] = None      # newest sample grid this call wrote (absolute)
    self.failure: Optional[Exception] = None
    self.stopped: Optional[Dict[str, Any]] = None   # {"step", scalars}: on_log stopped it
    self.reported: Dict[str, float] = {}  # this step's logged and eval/* scalars (on_log)
    self.ckpt = self.writer = None
    self.evals = []

  @property
  def training(self) -> bool:
    """Still trained, logged, saved and evaluated: neither failed nor stopped by on_log."""
    return self.failure is None and self.stopped is None


class Layout:
  """Where the loop's members live on devices: here one run, its train state replicated
  over a data-parallel mesh. Each method answers one thing the loop asks;
  :class:`diffusion.train.population.Population` answers them for P runs stacked along
  a population axis."""

  def __init__(self, members: List[Member], mesh):
    self.members, self.mesh = members, mesh

  def describe(self) -> str:
    """The start-up line's words about the layout (none for one run)."""
    return ""

  def prefix(self, i: int) -> str:
    """What starts member ``i``'s lines (nothing for one run)."""
    return ""

  def error_dir(self) -> str:
    """The folder a failed write's one-line error names."""
    return self.members[0].workdir

  def restore(self, states) -> List[Tuple[TrainState, Optional[int]]]:
    """(state, restored step or None) per member: its newest readable checkpoint."""
    return [m.ckpt.restore_latest(state) for m, state in zip(self.members, states)]

  def place(self, states) -> TrainState:
    """The members' states as the one device state of the compiled call."""
    return sharding.replicate(states[0], self.mesh)

  def member(self, tree, i: int):
    """Member ``i``'s part of a device tree (state, metrics, EMA parameters)."""
    return tree

  def step_fn(self, step: Callable, shared_data: bool) -> Callable:
    """One run's ``step(state, data)`` as the layout's: here its batch split over the
    mesh (data parallel). ``shared_data``: every member draws from the same arrays."""
    del shared_data
    return functools.partial(step, batch_sharding=NamedSharding(
        self.mesh, PartitionSpec(sharding.DATA_AXIS)))

  def next_batch(self, streams):
    """One step's host batch from the members' streams (streamed data)."""
    return next(streams[0])

  def failed(self, i: int) -> None:
    """Member ``i``'s loss became NaN/Inf (its ``failure`` is set): one run stops."""
    raise self.members[i].failure

  # A restored member takes the hyperparameters of its config (a resume may change them,
  # e.g. a lower learning rate to fine-tune); a layout that changes them while it trains
  # (population-based training) keeps those its checkpoint holds.
  keeps_checkpoint_hyperparameters = False

  def exploit(self, state, step: int, reports: Dict[int, Dict[str, float]]):
    """The members' device state after ``step``'s reports ({member: scalars} of the members
    that logged or were evaluated; ``eval/*`` on the chief only): what a layout changes
    between calls (population-based training copies and perturbs members); here nothing."""
    del step, reports
    return state

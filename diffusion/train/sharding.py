"""Placement on devices through ``jax.sharding``: one mesh axis, data or population.

A single run is data parallel (GSPMD): the train state is replicated over a 1-D
mesh and the global batch is split along the mesh axis ``data``; XLA inserts the
gradient all-reduce. A population of runs (:mod:`diffusion.sweeps`) uses the same
kind of mesh with the axis ``population``: each device holds whole members. The
same code runs on one CPU, eight GPUs or several hosts joined by
``jax.distributed`` (arrays are then built from each process's local data).
"""

from typing import Any, Optional, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
POPULATION_AXIS = "population"


def make_mesh(devices: Optional[Sequence[jax.Device]] = None, axis: str = DATA_AXIS) -> Mesh:
  """A 1-D mesh over ``devices`` (default: every device of every process)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (axis,))


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Every leaf of ``tree`` (the same host values in each process) replicated on ``mesh``."""
  sharding = NamedSharding(mesh, P())

  def place(x):
    if isinstance(x, jax.Array) and x.is_fully_addressable and jax.process_count() == 1:
      return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(place, tree)


def shard_leading(tree: Any, mesh: Mesh, axis_index: int = 0) -> Any:
  """Every leaf split along dimension ``axis_index`` over the mesh axis.

  The leaves hold the *global* values in every process (e.g. a population's
  stacked states); each device gets its block.
  """

  def place(x):
    host = np.asarray(x)
    spec = [None] * host.ndim
    spec[axis_index] = mesh.axis_names[0]
    sharding = NamedSharding(mesh, P(*spec))
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(place, tree)


def shard_batch(batch: np.ndarray, mesh: Mesh, axis: int = 0) -> jax.Array:
  """A host batch placed on ``mesh``, split along ``axis`` over the mesh axis.

  In a multi-host run each process passes its own slice of the global batch.
  """
  spec = [None] * batch.ndim
  spec[axis] = mesh.axis_names[0]
  sharding = NamedSharding(mesh, P(*spec))
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  global_shape = list(batch.shape)
  global_shape[axis] *= jax.process_count()
  return jax.make_array_from_process_local_data(sharding, batch, tuple(global_shape))


def to_host(tree: Any) -> Any:
  """Every leaf as a numpy array on this host (gathered across processes if needed)."""

  def fetch(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
      return np.asarray(x)
    if x.is_fully_replicated:
      return np.asarray(x.addressable_shards[0].data)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))

  return jax.tree.map(fetch, tree)

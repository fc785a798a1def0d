"""Sweep points as Ray tasks: a local Ray instance, or an existing cluster.

Each point is one task running the single-run path (``train``) in its own worker
process, with its resources: one GPU per point by default where the cluster has
GPUs, else one CPU (``--ray_gpus_per_point``, ``--ray_cpus_per_point``). A worker
lost mid-point (a pre-empted machine, kill -9) is retried by Ray up to
``max_retries`` times, and the retried point resumes from its checkpoint; an error
raised by the run itself (NaN, missing data) is not retried but recorded. On a
cluster of several machines the sweep folder must be on storage they share, and
every machine needs this checkout (the driver passes its path as PYTHONPATH).
"""

import os
from typing import Any, Dict, Optional, Sequence

import ray

from diffusion import paths
from diffusion.sweeps.ledger import Ledger
from diffusion.sweeps.points import finish, one_line
from diffusion.train.loop import train


def train_point(config, workdir: str) -> Dict[str, float]:
  """The body of a task: one ordinary run (imported in the worker by reference)."""
  return train(config, workdir, progress=False)


def run(ledger: Ledger, todo: Sequence[Dict[str, Any]], *, address: Optional[str] = None,
        gpus: Optional[float] = None, cpus: float = 1.0, max_retries: int = 3) -> None:
  """Submits every point of ``todo``, then records each as it finishes."""
  started_here = not ray.is_initialized()
  if started_here:
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [paths.REPO, os.environ.get("PYTHONPATH")]))}
    for name in ("JAX_PLATFORMS", "XLA_FLAGS", "TF_CPP_MIN_LOG_LEVEL"):
      if name in os.environ:
        env[name] = os.environ[name]
    ray.init(address=address, include_dashboard=False, runtime_env={"env_vars": env},
             logging_level="warning", configure_logging=True)
  try:
    if gpus is None:
      gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    task = ray.remote(train_point).options(num_gpus=gpus, num_cpus=cpus,
                                           max_retries=max_retries, retry_exceptions=False)
    pending = {}
    for p in todo:
      ledger.set(p["name"], "running")
      pending[task.remote(p["config"], ledger.point(p["name"])["workdir"])] = p
    print(f"sweep: {len(pending)} Ray tasks ({gpus:g} GPU, {cpus:g} CPU each) on "
          f"{address or 'a local Ray instance'}", flush=True)
    while pending:
      done, _ = ray.wait(list(pending), num_returns=1)
      p = pending.pop(done[0])
      try:
        result = ray.get(done[0])
      except ray.exceptions.RayTaskError as e:      # the run raised: recorded, not retried
        result = e.cause if isinstance(e.cause, BaseException) else e
      except ray.exceptions.RayError as e:          # the worker was lost more than max_retries
        result = e
      finish(ledger, p["name"], result, p["config"].training.num_train_steps)
      if isinstance(result, BaseException):
        print(f"sweep: {p['name']}: {one_line(result)}", flush=True)
  finally:
    if started_here:
      ray.shutdown()

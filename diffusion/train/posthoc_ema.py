"""Post-hoc EMA of a run: its profiles while it trains, any EMA length after it.

Karras et al. 2024 (EDM2), §3 and App. C; the maths is :mod:`diffusion.train.phema`.
While a run with ``training.phema_std_rel`` trains, the train state carries one
power-function EMA per σ_rel (:func:`gammas` for the step), and the loop writes their
snapshots (:mod:`diffusion.io.phema_snapshots`). After it, :func:`reconstruct` gives the
parameters of an EMA of any other length σ_rel at a snapshot's step: the least-squares
combination of the stored snapshots up to that step (App. C.3), streamed one file at a
time and summed in float64. What sample.py's ``--ema_std_rel``, ``diffusion.load(...,
ema_std_rel=)`` and ``python -m diffusion.sweeps ema`` read.

Which lengths can be reconstructed: σ_rel must lie in (0, 12^(-1/2)) (γ > 0, eq. 126),
and the snapshots must span its profile: the L2 misfit of the best combination,
‖Σ x_i p_i − p_r‖ / ‖p_r‖ (:func:`diffusion.train.phema.profile_error`), at most
:data:`MAX_MISFIT`. How far the span reaches depends on how many snapshots there are and
on the tracked lengths: EDM2 reconstructs 0.010-0.250 from (0.05, 0.10) with 256
snapshots; evenly spaced snapshots of that pair reach 0.019-0.26 with 20 snapshots and
0.008-0.28 with 64 (the default cadence), at a 10% misfit (:func:`reconstructable_range`).
"""

import dataclasses
import json
import os
from typing import Any, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from diffusion.errors import ConfigError
from diffusion.io import phema_snapshots
from diffusion.train import phema

# The largest L2 misfit of the reconstructed profile against the wanted one that is
# still called that length (a tenth of the profile's norm).
MAX_MISFIT = 0.1


def gammas(std_rel: Sequence[float]) -> Tuple[float, ...]:
  """γ of each tracked σ_rel (eq. 126), Python floats for the compiled step."""
  return tuple(float(g) for g in phema.std_to_gamma(np.asarray(std_rel, np.float64)))


# ---------------------------------------------------------------------------
# While training: a resume must track the same profiles
# ---------------------------------------------------------------------------


def check_resume(workdir: str, std_rel: Sequence[float]) -> None:
  """ConfigError (one line) when the run in ``workdir``, which has checkpoints, tracked
  other post-hoc EMA profiles than ``std_rel`` (its config.json says which): a profile
  averages the whole run, so it cannot start, stop or change length midway."""
  path = os.path.join(workdir, "config.json")
  try:
    with open(path, encoding="utf-8") as f:
      before = tuple(json.load(f).get("training", {}).get("phema_std_rel", ()))
  except (OSError, ValueError, AttributeError):
    return   # no readable config.json: the checkpoints' own shapes decide
  if tuple(float(s) for s in before) != tuple(float(s) for s in std_rel):
    raise ConfigError(
        f"training.phema_std_rel={tuple(std_rel)} but the run in {workdir} was trained with "
        f"{tuple(before)}: post-hoc EMA profiles average the whole run and cannot be added, "
        f"removed or changed on resume; keep --config.training.phema_std_rel="
        f"{','.join(str(s) for s in before) or '()'} or use a new --workdir.")


# ---------------------------------------------------------------------------
# After training: any length from the snapshots
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Reconstruction:
  """A post-hoc EMA: its parameters and where they come from.

  Attributes:
    params: the parameter tree (float32 jax arrays, the shapes of the run's params).
    std_rel: its relative length σ_rel.
    step: the training step it averages up to (a snapshot's).
    snapshot_steps: the steps of the snapshots combined (each with every profile).
    misfit: the profile's relative L2 misfit (0: exact, as at a tracked σ_rel).
    folder: ``<workdir>/phema``.
  """
  params: Any
  std_rel: float
  step: int
  snapshot_steps: List[int]
  misfit: float
  folder: str


def reconstructable_range(steps: Sequence[int], stds: Sequence[float], target_step: int,
                          max_misfit: float = MAX_MISFIT) -> Optional[Tuple[float, float]]:
  """The smallest and largest σ_rel (of a log grid of 400 over (1e-3, 12^(-1/2))) whose
  profile at ``target_step`` the snapshots (step, σ_rel per snapshot and profile) span
  within ``max_misfit``; None when none is."""
  grid = np.geomspace(1e-3, 12 ** -0.5 * (1 - 1e-6), 400)
  ok = [s for s in grid if phema.profile_error(steps, stds, target_step, s) <= max_misfit]
  return (float(min(ok)), float(max(ok))) if ok else None


def _fmt(std: float) -> str:
  return f"{std:.4g}"


@dataclasses.dataclass
class Plan:
  """How a post-hoc EMA is made: the snapshot files and each profile's weight.

  Attributes:
    std_rel, step: the EMA wanted (σ_rel, at a snapshot's step).
    files: (step, path) of the snapshots combined, ascending.
    weights: float64 [profiles]: one per (file, profile), in file then profile order.
    misfit: the reconstructed profile's relative L2 misfit.
    folder: ``<workdir>/phema``.
  """
  std_rel: float
  step: int
  files: List[Tuple[int, str]]
  weights: np.ndarray
  misfit: float
  folder: str


def plan(workdir: str, family, std_rel: float, step: int = -1) -> Plan:
  """Checks that the EMA of length ``std_rel`` at snapshot ``step`` (-1: the newest) can
  be made from the snapshots in ``<workdir>/phema`` up to that step, and solves for their
  weights (reads only the files' headers). Arguments and errors as :func:`reconstruct`."""
  tracked = family.config.training.phema_std_rel
  if not tracked:
    raise ConfigError(f"--ema_std_rel needs post-hoc EMA snapshots, and {workdir} was trained "
                      "without them (training.phema_std_rel=()); train with "
                      "--config.training.phema_std_rel=0.05,0.1 (EDM2's pair).")
  files = phema_snapshots.list_snapshots(workdir)
  folder = phema_snapshots.snapshot_dir(workdir)
  if not files:
    raise ConfigError(f"--ema_std_rel: no post-hoc EMA snapshots in {folder} yet (the run "
                      f"writes one every training.phema_every steps and at its last step); "
                      "train first.")
  if (isinstance(std_rel, bool) or not isinstance(std_rel, (int, float, np.number))
      or not np.isfinite(std_rel) or not 0 < std_rel < 12 ** -0.5):
    raise ConfigError(f"--ema_std_rel={std_rel} is not a relative EMA length; give one in "
                      f"(0, {12 ** -0.5:.4f}) (EDM2 eq. 126: σ_rel = 12^(-1/2) is the plain "
                      "average of the whole run).")
  available = [s for s, _ in files]
  target = available[-1] if step < 0 else step
  if target not in available:
    raise ConfigError(f"--checkpoint_step={step} has no post-hoc EMA snapshot in {folder} "
                      f"(snapshots at steps {_steps_text(available)}); give one of those, or "
                      "-1 for the newest.")
  used = [(s, path) for s, path in files if s <= target]
  headers = [phema_snapshots.read_header(path) for _, path in used]
  steps = [s for (s, _), (_, stds) in zip(used, headers) for _ in stds]
  stds = [d for _, ds in headers for d in ds]
  misfit = phema.profile_error(steps, stds, target, std_rel)
  if misfit > MAX_MISFIT:
    reach = reconstructable_range(steps, stds, target)
    where = (f"σ_rel in [{_fmt(reach[0])}, {_fmt(reach[1])}]" if reach else "no σ_rel")
    raise ConfigError(
        f"--ema_std_rel={std_rel} cannot be reconstructed from the {len(used)} snapshots of "
        f"σ_rel {tuple(sorted(set(stds)))} up to step {target} in {folder} (its profile's "
        f"misfit is {misfit:.0%}, over {MAX_MISFIT:.0%}); they reconstruct {where}: give "
        "one there, or train with more frequent snapshots (training.phema_every).")
  weights = phema.solve_coefficients(steps, stds, target, std_rel)[:, 0]
  return Plan(std_rel=float(std_rel), step=target, files=used, weights=weights,
              misfit=misfit, folder=folder)


def reconstruct(workdir: str, family, std_rel: float, step: int = -1) -> Reconstruction:
  """The EMA of length ``std_rel`` at snapshot ``step`` (-1: the newest), from the
  snapshots in ``<workdir>/phema`` up to that step.

  Args:
    workdir: a run trained with ``training.phema_std_rel``.
    family: the run's family (``family.abstract_params()`` gives the shapes;
      ``family.config.training.phema_std_rel`` says whether the run tracked profiles).
    std_rel: σ_rel of the EMA wanted.
    step: a snapshot's step, or -1 for the newest.
  Raises:
    ConfigError (one line): a run without post-hoc EMA, no snapshots, no snapshot at
    ``step``, a σ_rel outside (0, 12^(-1/2)) or whose profile the snapshots do not span
    within :data:`MAX_MISFIT` (the line gives the range they do).
  """
  made = plan(workdir, family, std_rel, step)
  params = _weighted_sum(made.files, made.weights, family.abstract_params())
  return Reconstruction(params=params, std_rel=made.std_rel, step=made.step,
                        snapshot_steps=[s for s, _ in made.files], misfit=made.misfit,
                        folder=made.folder)


def _weighted_sum(used: Sequence[Tuple[int, str]], weights: np.ndarray, target: Any) -> Any:
  """Σ_i w_i θ̂_i over the snapshots' profiles (in file order, then profile order),
  streamed: one file in memory at a time, the sum in float64, returned as float32 jax
  arrays (each leaf in its target's dtype)."""
  total, i = None, 0
  for _, path in used:
    for _, tree in phema_snapshots.read_profiles(path, target):
      w = float(weights[i])
      i += 1
      part = [w * np.asarray(leaf, np.float64) for leaf in jax.tree.leaves(tree)]
      total = part if total is None else [a + b for a, b in zip(total, part)]
  return jax.tree.unflatten(jax.tree.structure(target), [
      jnp.asarray(t, leaf.dtype) for t, leaf in zip(total, jax.tree.leaves(target))])


def _steps_text(steps: Sequence[int]) -> str:
  """The steps, shortened to the first three and last three when there are many."""
  if len(steps) <= 8:
    return ", ".join(map(str, steps))
  return ", ".join(map(str, steps[:3])) + ", ..., " + ", ".join(map(str, steps[-3:]))

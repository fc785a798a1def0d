"""Samples and evaluations of a trained run: everything ``sample.py`` does, as a function.

  result = generate(None, "runs/digits", num_samples=64, seed=0)
  result.output, result.meta        # the folder written, and its meta.json

:func:`generate` restores the EMA parameters of a checkpoint (no optimizer, no training
data), names the output folder and checks it before anything is sampled, draws the
samples sharded over the local devices, writes samples.png / samples.npz, the family's
extra files and meta.json, then runs the requested evaluators. It names no family,
sampler or evaluator: the family describes its sampling (``sampling_record``) and writes
its extras (``write_extras``). Its keyword arguments are ``sample.py``'s flags, and its
errors (ConfigError, one line, before anything is written) name them by those flags.
"""

import dataclasses
import datetime
import os
import shutil
import sys
import tempfile
import time
from typing import Dict, Optional, Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from PIL import Image
from tqdm import tqdm

from diffusion import families
from diffusion.config import checks, parse_config
from diffusion.errors import ConfigError, Interrupted, signal_name
from diffusion.evals import make_evaluators
from diffusion.io import atomic, images, temporaries
from diffusion.io.workdir import load_config, restore_ema_params
from diffusion.train import posthoc_ema, sharding


@dataclasses.dataclass
class Generated:
  """What :func:`generate` wrote and measured.

  Attributes:
    output: the folder holding samples.npz, samples.png, meta.json and the evaluators'
      files.
    meta: meta.json's contents: seed, checkpoint, count, date, ``seconds`` (the whole
      call's work), and when sampled the sampler, its steps and options and
      ``sampling_seconds``; with evaluators ``evals`` and ``eval_seconds`` per evaluator.
    samples: what samples.npz holds: uint8 images [N, H, W, C], or float32 points
      [N, D]; None when nothing was sampled (``num_samples=0``).
    scores: the evaluators' ``{"eval/<metric>": value}``.
  """
  output: str
  meta: Dict
  samples: Optional[np.ndarray]
  scores: Dict[str, float]


def generate(config, workdir: str, *, num_samples: int = 64, seed: int = 0,
             output: str = "", evals: Sequence[str] = (), batch_size: int = 0,
             checkpoint_step: int = -1, sampler: Optional[str] = None,
             steps: Optional[int] = None, progress: bool = True,
             ema_std_rel: Optional[float] = None) -> Generated:
  """Draws ``num_samples`` from the run in ``workdir`` and runs evaluators on them.

  Args:
    config: the run's config with any changes (ConfigDict, dict or typed), e.g.
      ``diffusion.load(w).config`` with another ``sampling``; None: the workdir's
      config.json as it is.
    workdir: a training run's folder (config.json, checkpoints/).
    num_samples: how many to draw; 0 runs only evaluators that score no samples (bpd).
    seed: the sampling seed (sample i of a batch call j uses fold_in(PRNGKey(seed), j)).
    output: the output folder; default ``<workdir>/samples_<step>_<sampling>_seed<seed>``
      (``eval_<step>_<evals>_seed<seed>`` when nothing is sampled), numbered _2, _3, ...
      rather than overwritten. A folder that already holds samples is refused. Ctrl-C
      or an error before meta.json is written leaves the folder as it was (removed when
      this call made it); what a killed call left is removed by the next call.
    evals: names of evaluators of ``config.eval`` to run (e.g. ``("bpd",)``).
    batch_size: samples per compiled call (0: ``config.sampling.batch_size``).
    checkpoint_step: the checkpoint to load (-1: the newest readable one).
    sampler, steps: a diffusion run's ``sampling.method`` / ``sampling.num_steps`` for
      this call (None: the config's).
    progress: a progress bar on stderr while sampling.
    ema_std_rel: sample a post-hoc EMA of this relative length σ_rel (EDM2 §3),
      reconstructed from the run's snapshots (``training.phema_std_rel``) up to snapshot
      ``checkpoint_step`` (-1: the newest), instead of the checkpoint's EMA; the folder
      name (``..._ema<σ_rel>_...``) and meta.json (``ema_std_rel``) record it.

  Returns:
    :class:`Generated`: the folder, meta.json's dict, the samples and the scores.

  Raises:
    ConfigError: a bad argument, config or output place (nothing written yet), a
      missing checkpoint or evaluator weights file.
  """
  _check_arguments(num_samples, evals, batch_size, steps, seed, checkpoint_step)
  cfg = _typed_config(config, workdir, sampler, steps)
  family = families.make_family(cfg)
  record = family.sampling_record(
      steps_from="--steps" if steps is not None else "config.sampling.num_steps")
  if ema_std_rel is None:
    params, step = restore_ema_params(workdir, family, checkpoint_step)
    source = {"checkpoint": os.path.abspath(os.path.join(workdir, "checkpoints", str(step)))}
  else:
    made = posthoc_ema.reconstruct(workdir, family, ema_std_rel, checkpoint_step)
    params, step = made.params, made.step
    source = {"checkpoint": made.folder, "ema_std_rel": made.std_rel,
              "ema_snapshots": len(made.snapshot_steps),
              "ema_profile_misfit": round(made.misfit, 6)}
  remove_stale_outputs(workdir, output)
  # The output place: named by what runs (everything that changes the samples; the
  # evaluators alone when nothing is sampled), never overwritten, checked writable and
  # big enough before anything is sampled.
  evals = list(dict.fromkeys(evals))
  out = output or unused_folder(os.path.join(workdir, folder_name(
      record, step, seed, num_samples, evals, ema_std_rel)))
  check_output(out, num_samples, family)
  # The evaluators first: a missing weights file fails now, not after sampling.
  evaluators = make_evaluators(family, workdir, evals, seed=seed)
  if num_samples == 0:
    for ev in evaluators:
      if ev.SCORES_SAMPLES:
        raise ConfigError(f"--eval={ev.name} scores samples; give --num_samples > 0.")
  mesh = sharding.make_mesh(jax.local_devices())
  params = sharding.replicate(params, mesh)
  created = not os.path.isdir(out)
  os.makedirs(out, exist_ok=True)
  # Marked while it is written: what a killed call leaves is removed by the next one
  # (remove_stale_outputs); an interrupted or failed call removes it itself (_discard).
  temporaries.mark_incomplete(out, created)
  before = set(os.listdir(out))
  began = time.time()
  try:
    meta = {"seed": seed, **source, "checkpoint_step": step, "count": num_samples,
            "workdir": os.path.abspath(workdir),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds")}
    if num_samples > 0:   # an evaluation alone names no sampler: none ran
      meta.update({"sampler": record.sampler, "steps": record.steps, **record.options})
    if evals:
      meta["evals"] = evals
    x = imgs = None
    if num_samples > 0:
      print(f"sampling {num_samples} with {record.sampler}, {record.phrase}", flush=True)
      start = time.time()
      x = _draw(family, params, mesh, num_samples, batch_size or cfg.sampling.batch_size,
                seed, progress)
      meta["sampling_seconds"] = round(time.time() - start, 3)
      print(f"sampled {len(x)} with {record.sampler} from step {step} ({record.steps} "
            f"steps) in {meta['sampling_seconds']:.1f}s "
            f"({len(x) / max(meta['sampling_seconds'], 1e-9):.2f} samples/s)", flush=True)
      imgs = _write_samples(out, family, x, params, seed)
    meta["seconds"] = round(time.time() - began, 3)
    atomic.write_json(os.path.join(out, "meta.json"), meta)   # kept if an evaluation stops
  except BaseException as e:
    kept = _discard(out, created, before)
    if isinstance(e, KeyboardInterrupt):
      what = "sampling" if num_samples > 0 else "starting the evaluations"
      raise Interrupted(f"interrupted ({signal_name(e)}) while {what}; nothing was written "
                        f"({kept}).", signal_name(e)) from None
    raise
  try:
    scores = _evaluate(evaluators, params, step, out, imgs, progress, meta)
    if evaluators:
      meta["seconds"] = round(time.time() - began, 3)
      atomic.write_json(os.path.join(out, "meta.json"), meta)
  except KeyboardInterrupt as e:
    done = "the samples and meta.json" if num_samples > 0 else "meta.json"
    raise Interrupted(f"interrupted ({signal_name(e)}) during the evaluations; {done} in "
                      f"{out} are kept, the interrupted evaluator wrote nothing.",
                      signal_name(e)) from None
  finally:
    temporaries.unmark(out)
  print(f"wrote {os.path.join(out, 'meta.json')}", flush=True)
  return Generated(output=out, meta=meta, samples=x if imgs is None else imgs, scores=scores)


PARTIAL_FILES = ("samples.png", "samples.npz")   # what a call writes before meta.json


def remove_stale_outputs(workdir: str, output: str = "") -> list:
  """Removes what killed calls left (:mod:`diffusion.io.temporaries`): each folder of
  ``workdir`` (and ``output``) marked ``.incomplete-<pid>`` by a process that is gone,
  without meta.json: the folder if that call made it, else the samples it wrote. Returns
  what was removed."""
  folders = []
  try:
    folders = [os.path.join(workdir, e) for e in os.listdir(workdir)
               if os.path.isdir(os.path.join(workdir, e))]
  except OSError:
    pass
  if output and os.path.isdir(output):
    folders.append(output)
  removed = [temporaries.remove_incomplete(f, PARTIAL_FILES, "meta.json") for f in folders]
  return [r for r in removed if r]


def _discard(out: str, created: bool, before) -> str:
  """Removes what this call wrote to ``out`` (all of it when it made ``out``); says what."""
  temporaries.unmark(out)
  if created:
    shutil.rmtree(out, ignore_errors=True)
    return f"the new folder {out} was removed"
  for name in set(os.listdir(out)) - set(before):
    path = os.path.join(out, name)
    if os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    else:
      os.remove(path)
  return f"{out} is as it was"


def _check_arguments(num_samples, evals, batch_size, steps, seed,
                     checkpoint_step) -> None:
  """Every numeric argument, before anything is built (one-line errors)."""
  for name, value in (("num_samples", num_samples), ("batch_size", batch_size),
                      ("steps", steps), ("seed", seed), ("checkpoint_step", checkpoint_step)):
    if value is not None and (not isinstance(value, (int, np.integer))
                              or isinstance(value, (bool, np.bool_))):
      raise ConfigError(f"--{name}={value!r} is not valid; it must be an integer.")
  if isinstance(evals, str) or not all(isinstance(e, str) for e in evals):
    raise ConfigError(f"--eval={evals!r} is not valid; give a list of evaluator names.")
  if num_samples < 0:
    raise ConfigError(f"--num_samples={num_samples} is not valid; it must be > 0 (or 0 "
                      "with --bpd / --eval=bpd for bits/dim without sampling).")
  if num_samples == 0 and not evals:
    raise ConfigError("--num_samples=0 draws nothing; give --bpd (or --eval=bpd) for "
                      "bits/dim without sampling, or --num_samples > 0.")
  if batch_size < 0:
    raise ConfigError(f"--batch_size={batch_size} is not valid; it must be > 0 "
                      "(or 0 for config.sampling.batch_size).")
  if steps is not None and steps < 0:
    raise ConfigError(f"--steps={steps} is not valid; it must be >= 0 (0 = every level).")
  if not 0 <= seed < 2 ** 32:   # jax.random.PRNGKey keeps 32 bits: 2^32 would draw as 0
    raise ConfigError(f"--seed={seed} is not valid; it must be in [0, 2^32).")
  if checkpoint_step < -1:
    raise ConfigError(f"--checkpoint_step={checkpoint_step} is not valid; give a saved step, "
                      "or -1 for the latest.")


def _typed_config(config, workdir: str, sampler: Optional[str], steps: Optional[int]):
  """The run's typed config (``config``, or the workdir's config.json), with ``--sampler``
  and ``--steps``, validated."""
  if not os.path.isfile(os.path.join(workdir, "config.json")):
    raise ConfigError(f"--workdir={workdir} has no config.json; point it at a training run.")
  cfg = parse_config(load_config(workdir) if config is None else config)
  return checks.validate(with_sampler(cfg, sampler, steps), num_devices=1)


def with_sampler(cfg, sampler: Optional[str], steps: Optional[int]):
  """The typed ``cfg`` with ``--sampler`` as ``sampling.method`` and ``--steps`` as
  ``sampling.num_steps``; a run whose sampling has no such field (a VAE's) refuses them."""
  changes = {name: value for name, value in (("method", sampler), ("num_steps", steps))
             if value is not None}
  if not changes:
    return cfg
  if not all(hasattr(cfg.sampling, name) for name in changes):
    raise ConfigError("--sampler and --steps choose a diffusion sampler; this run is a "
                      f"{cfg.family} (see --config.sampling.*).")
  return cfg.replace(sampling=cfg.sampling.replace(**changes))


def folder_name(record, step: int, seed: int, num_samples: int,
                evals: Sequence[str] = (), ema_std_rel: Optional[float] = None) -> str:
  """``samples_<step>_<record.name>[_ema<σ_rel>]_seed<seed>`` (``_ema<σ_rel>`` for a
  post-hoc EMA); when nothing is sampled, ``eval_<step>_<evaluators>[_ema<σ_rel>]_seed<seed>``
  (named by what ran, not by a sampler)."""
  ema = "" if ema_std_rel is None else f"_ema{ema_std_rel:g}"
  if num_samples == 0:
    return f"eval_{step}_{'+'.join(evals) or 'none'}{ema}_seed{seed}"
  return f"samples_{step}_{record.name}{ema}_seed{seed}"


def unused_folder(path: str) -> str:
  """``path``, or ``path_2``, ``path_3``, ... : the first that does not exist."""
  if not os.path.exists(path):
    return path
  i = 2
  while os.path.exists(f"{path}_{i}"):
    i += 1
  return f"{path}_{i}"


def check_output(out: str, num: int, family) -> None:
  """One-line errors before sampling: a file in the way, an unwritable folder, a folder
  that already holds samples (never overwritten), or more samples than memory/disk hold."""
  if os.path.exists(out) and not os.path.isdir(out):
    raise ConfigError(f"--output={out} is a file; give a folder (it is created if missing).")
  if os.path.isdir(out) and any(os.path.exists(os.path.join(out, n))
                                for n in ("samples.npz", "meta.json")):
    raise ConfigError(f"--output={out} already holds samples; give another --output (or "
                      "leave it out: the default folder is never overwritten).")
  parent = os.path.abspath(out)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise ConfigError(f"--output={out}: {parent} is a file, not a folder; give another "
                      "--output.")
  try:  # a real write: permissions, read-only mounts and root all answer the same way
    fd, probe = tempfile.mkstemp(prefix=".write_check.", dir=parent)
    os.close(fd)
    os.remove(probe)
  except OSError as e:
    raise ConfigError(f"--output={out}: {parent} is not writable ({e.strerror}); give "
                      "--output=<a writable folder>.") from None
  if num == 0:
    return
  per = int(np.prod(family.example_shape))
  # float32 samples twice (device result, host copy) and their uint8 images.
  need_mem = num * per * 4 * 2 + num * per
  need_disk = num * per * 4
  try:
    avail_mem = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (ValueError, OSError, AttributeError):
    avail_mem = None
  free_disk = shutil.disk_usage(parent).free
  if avail_mem is not None and need_mem > avail_mem:
    fit = max(1, num * avail_mem // need_mem)
    raise ConfigError(f"--num_samples={num} needs about {_gb(need_mem)} of memory; "
                      f"{_gb(avail_mem)} is free: give --num_samples <= {fit} (or "
                      "several calls with other --seed).")
  if need_disk > free_disk:
    fit = max(1, num * free_disk // need_disk)
    raise ConfigError(f"--num_samples={num} needs up to {_gb(need_disk)} on disk; {parent} "
                      f"has {_gb(free_disk)} free: give --num_samples <= {fit} or another "
                      "--output.")


def _draw(family, params, mesh, num: int, batch: int, seed: int, progress: bool) -> np.ndarray:
  """``num`` samples [num, *example_shape] (model space), ``batch`` per compiled call
  (rounded up to a multiple of the devices, the batch sharded over them)."""
  batch = -(-min(batch, num) // mesh.size) * mesh.size
  sample_fn = family.sample_fn(batch, out_sharding=NamedSharding(
      mesh, PartitionSpec(sharding.DATA_AXIS)))
  bar = tqdm(total=num, unit="img", file=sys.stderr) if progress else None
  x = families.draw(sample_fn, params, num, batch, jax.random.PRNGKey(seed),
                    on_chunk=bar.update if bar is not None else None)
  if bar is not None:
    bar.close()
  return x


def _write_samples(out: str, family, x: np.ndarray, params, seed: int) -> Optional[np.ndarray]:
  """samples.npz in ``out``: uint8 images (also samples.png, the first 256), returned;
  or the float32 points (None is returned). Then the family's extra files."""
  imgs = family.to_uint8(x)
  if imgs is None:
    atomic.write_npz(os.path.join(out, "samples.npz"), arr_0=x)
    print(f"wrote {out}/samples.npz (float32 {x.shape})", flush=True)
  else:
    atomic.write_with(os.path.join(out, "samples.png"),
                      lambda f: _png(imgs[:256]).save(f, format="PNG"), binary=True)
    atomic.write_npz(os.path.join(out, "samples.npz"), arr_0=imgs)
    print(f"wrote {out}/samples.png and samples.npz (uint8 {imgs.shape})", flush=True)
  extras = family.write_extras(params, out, jax.random.fold_in(jax.random.PRNGKey(seed), 1))
  if extras:
    print(f"wrote {', '.join(os.path.basename(p) for p in extras)} to {out}", flush=True)
  return imgs


def _evaluate(evaluators, params, step: int, out: str, imgs: Optional[np.ndarray],
              progress: bool, meta: Dict) -> Dict:
  """Runs each evaluator on the checkpoint (those that score samples: on ``imgs``, the
  uint8 samples drawn), its files in ``out``; prints its line and each file it wrote,
  and records its time in ``meta["eval_seconds"]``. Returns their scores together."""
  scores = {}
  for ev in evaluators:
    ev.output_dir, ev.progress = out, progress
    before = set(os.listdir(out))
    start = time.time()
    scores.update(ev.run(params, step, samples=imgs if ev.SCORES_SAMPLES else None))
    meta.setdefault("eval_seconds", {})[ev.name] = round(time.time() - start, 3)
    print(f"{ev.summary()} ({meta['eval_seconds'][ev.name]:.1f} s)", flush=True)
    for name in sorted(set(os.listdir(out)) - before):
      print(f"wrote {os.path.join(out, name)}", flush=True)
  return scores


def _png(imgs: np.ndarray) -> Image.Image:
  """The grid of images.save_grid as a PIL image (written atomically by the caller)."""
  grid = images.make_grid(imgs)
  up = max(1, images.GRID_MIN_TILE // imgs.shape[1])
  grid = grid.repeat(up, axis=0).repeat(up, axis=1)
  return Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)


def _gb(n: int) -> str:
  return f"{n / 2**30:.1f} GB" if n >= 2**28 else f"{n / 2**20:.0f} MB"

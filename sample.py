"""Draw samples from a trained run (EMA parameters of its latest checkpoint).

  python sample.py --workdir=runs/ddpm_cifar10 --num_samples=1000 \
      [--sampler=ddim --steps=50 --config.sampling.eta=0.0 ...] [--fid] [--bpd]

Writes <out>/samples.png (a grid of the first 256), <out>/samples.npz
(uint8 [N, H, W, C] under the key ``arr_0``, as improved-diffusion writes it) and
<out>/meta.json (sampler, effective steps, eta, seed, checkpoint, count, seconds,
date). <out> defaults to <workdir>/samples_<step>_<sampler>_s<steps>[_eta<eta>]_seed<seed>,
numbered _2, _3, ... if that folder exists: a second call never overwrites the
first. ``--num_samples=0 --bpd`` (or ``--eval=bpd``) computes bits/dim without
sampling. The output place is checked (writable, room for the samples) before
anything is sampled. The run's config is
read from <workdir>/config.json; any of it can be overridden with --config.*.
Sampling is sharded over all local devices; N need not divide the batch size.
Only the EMA parameters are restored: no optimizer is built and no training
data is read (the test split is read for --bpd; --fid reads the training split
once to cache its statistics).
"""

import datetime
import os
import shutil
import sys
import tempfile
import time

# diffusion before jax: the package's start-up (diffusion.cli.preamble) makes a signal while
# the libraries load one line, exit 2.
from diffusion import cli, compile_cache, evals, families, samplers, xla_cpu
from diffusion.config import checks as config_check
from diffusion.errors import ConfigError
from diffusion.families import vae_pictures
from diffusion.io import atomic, images
from diffusion.io import workdir as runs
from diffusion.train import sharding

import jax
import numpy as np
from absl import flags
from jax.sharding import NamedSharding, PartitionSpec
from ml_collections import config_flags
from PIL import Image
from tqdm import tqdm

from configs import base

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's workdir.")
_NUM = flags.DEFINE_integer("num_samples", 64, "Number of samples to draw.")
_BATCH = flags.DEFINE_integer("batch_size", 0, "Samples per compiled call (0: "
                              "config.sampling.batch_size).")
_SAMPLER = flags.DEFINE_string("sampler", None, "ancestral | ddim | annealed_langevin "
                               "(default: config.sampling.method).")
_STEPS = flags.DEFINE_integer("steps", None, "Sampling steps (default: "
                              "config.sampling.num_steps; 0 = every level).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_OUT = flags.DEFINE_string("output", "", "Output folder (default "
                           "<workdir>/samples_<step>_<sampler>_s<steps>[_eta<eta>]_seed<seed>, "
                           "numbered _2, _3, ... rather than overwritten).")
_STEP = flags.DEFINE_integer("checkpoint_step", -1, "Checkpoint to load (-1: latest).")
_FID = flags.DEFINE_bool("fid", False, "Compute FID/IS/KID of the samples against the "
                         "training set (needs --config.eval.fid.inception_weights).")
_BPD = flags.DEFINE_bool("bpd", False, "Compute bits/dim on config.eval.bpd.num_examples "
                         "of the eval split (VP variants only).")
_EVAL = flags.DEFINE_list("eval", [], "Evaluators of config.eval to run on the checkpoint, "
                          "e.g. elbo (VAE), bpd, fid.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.mark_flags_as_required(["workdir"])


def _define_config_flag(argv):
  """Defines --config from <workdir>/config.json so --config.* overrides work."""
  workdir = cli.flag_value(argv, "workdir")
  config = base.get_config()
  if workdir and os.path.isfile(os.path.join(workdir, "config.json")):
    try:
      config = runs.load_config(workdir)
    except ConfigError as e:  # truncated, unknown field, bad value: one line, no traceback
      path = os.path.join(workdir, "config.json")
      text = str(e)
      if path not in text:
        text = f"{path}: {text}"
      if "not readable JSON" not in text:
        text += f" Fix or remove that field in {path} (configs/base.py lists every field)."
      cli.fail(text)
  config_flags.DEFINE_config_dict("config", config, "The run's config (from the workdir).")


def main(argv):
  del argv
  compile_cache.enable()
  xla_cpu.configure()
  cli.run_main(run, ConfigError)


def _check_flags() -> None:
  """Every numeric flag, before anything is built (one-line errors)."""
  if _NUM.value < 0:
    raise ConfigError(f"--num_samples={_NUM.value} is not valid; it must be > 0 (or 0 "
                      "with --bpd / --eval=bpd for bits/dim without sampling).")
  if _NUM.value == 0 and not (_BPD.value or _EVAL.value):
    raise ConfigError("--num_samples=0 draws nothing; give --bpd (or --eval=bpd) for "
                      "bits/dim without sampling, or --num_samples > 0.")
  if _BATCH.value < 0:
    raise ConfigError(f"--batch_size={_BATCH.value} is not valid; it must be > 0 "
                      "(or 0 for config.sampling.batch_size).")
  if _STEPS.value is not None and _STEPS.value < 0:
    raise ConfigError(f"--steps={_STEPS.value} is not valid; it must be >= 0 (0 = every "
                      "level).")
  if _SEED.value < 0:
    raise ConfigError(f"--seed={_SEED.value} is not valid; it must be >= 0.")
  if _STEP.value < -1:
    raise ConfigError(f"--checkpoint_step={_STEP.value} is not valid; give a saved step, "
                      "or -1 for the latest.")


def run():
  _check_flags()
  workdir = _WORKDIR.value
  if not os.path.isfile(os.path.join(workdir, "config.json")):
    raise ConfigError(f"--workdir={workdir} has no config.json; point it at a training run.")
  config = flags.FLAGS.config
  if config.get("family", "diffusion") != "diffusion" and (_SAMPLER.value or _STEPS.value):
    raise ConfigError("--sampler and --steps choose a diffusion sampler; this run is a "
                      f"{config.family} (see --config.sampling.*).")
  if _SAMPLER.value is not None:
    config.sampling.method = _SAMPLER.value
  if _STEPS.value is not None:
    config.sampling.num_steps = _STEPS.value
  cfg = config_check.validate(config, num_devices=1)
  family = families.make_family(cfg)
  num = _NUM.value
  requested = list(dict.fromkeys(
      [name for name, on in (("bpd", _BPD.value), ("fid", _FID.value)) if on] + _EVAL.value))
  method = cfg.sampling.method if cfg.family == "diffusion" else cfg.sampling.output
  eff_steps, steps_note = effective_steps(cfg, family)
  params, step = runs.restore_ema_params(workdir, family, _STEP.value)
  # The output place: named by everything that changes the samples, never overwritten,
  # checked writable and big enough before anything is sampled.
  out = _OUT.value or unused_folder(os.path.join(workdir, default_name(
      cfg, method, eff_steps, step, num)))
  check_output(out, num, family)
  # Build the evaluators first: a missing weights file fails now, not after sampling.
  evaluators = evals.make_evaluators(family, workdir, requested, seed=_SEED.value)
  if num == 0:
    for ev in evaluators:
      if ev.SCORES_SAMPLES:
        raise ConfigError(f"--eval={ev.name} "
                          "scores samples; give --num_samples > 0.")
  mesh = sharding.make_mesh(jax.local_devices())
  params = sharding.replicate(params, mesh)
  os.makedirs(out, exist_ok=True)
  meta = {"sampler": method, "steps": eff_steps, "seed": _SEED.value,
          "checkpoint": os.path.abspath(os.path.join(workdir, "checkpoints", str(step))),
          "checkpoint_step": step, "count": num, "workdir": os.path.abspath(workdir),
          "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
  if cfg.family == "diffusion" and method == "ddim":
    meta["eta"] = float(cfg.sampling.eta)
  imgs = None
  seconds = 0.0
  if num > 0:
    print(f"sampling {num} with {method}, {steps_note}", flush=True)
    batch = _BATCH.value or cfg.sampling.batch_size
    batch = -(-min(batch, num) // mesh.size) * mesh.size  # a multiple of the devices
    sample_fn = family.sample_fn(batch, out_sharding=NamedSharding(
        mesh, PartitionSpec(sharding.DATA_AXIS)))
    bar = tqdm(total=num, unit="img", file=sys.stderr) if _PROGRESS.value else None
    start = time.time()
    x = families.draw(sample_fn, params, num, batch, jax.random.PRNGKey(_SEED.value),
                      on_chunk=bar.update if bar is not None else None)
    if bar is not None:
      bar.close()
    seconds = time.time() - start
    print(f"sampled {len(x)} with {method} from step {step} ({eff_steps} steps) in "
          f"{seconds:.1f}s ({len(x) / seconds:.2f} samples/s)", flush=True)
    imgs = family.to_uint8(x)
    if imgs is not None:
      atomic.write_with(os.path.join(out, "samples.png"),
                        lambda f: _png(imgs[:256]).save(f, format="PNG"), binary=True)
      atomic.write_npz(os.path.join(out, "samples.npz"), arr_0=imgs)
      print(f"wrote {out}/samples.png and samples.npz (uint8 {imgs.shape})", flush=True)
    else:
      atomic.write_npz(os.path.join(out, "samples.npz"), arr_0=x)
      print(f"wrote {out}/samples.npz (float32 {x.shape})", flush=True)
    if cfg.family == "vae":
      written = vae_pictures.write_pictures(
          family, params, out, jax.random.fold_in(jax.random.PRNGKey(_SEED.value), 1))
      print(f"wrote {', '.join(os.path.basename(w) for w in written)} to {out}", flush=True)
  meta["seconds"] = round(seconds, 3)
  atomic.write_json(os.path.join(out, "meta.json"), meta)
  for ev in evaluators:
    ev.output_dir = out
    before = set(os.listdir(out))
    ev.run(params, step, samples=imgs if ev.SCORES_SAMPLES else None)
    print(ev.summary(), flush=True)
    for name in sorted(set(os.listdir(out)) - before):
      print(f"wrote {os.path.join(out, name)}", flush=True)
  print(f"wrote {os.path.join(out, 'meta.json')}", flush=True)


def effective_steps(cfg, family):
  """(the number of network evaluations per sample's chain, a phrase that says where it
  came from): ``--steps`` / ``config.sampling.num_steps``, or 0 = every level."""
  if cfg.family != "diffusion":
    return 1, "one decoder pass"
  levels = int(family.process.num_timesteps)
  n = int(cfg.sampling.num_steps)
  origin = "--steps" if _STEPS.value is not None else "config.sampling.num_steps"
  steps = samplers.effective_steps(cfg.sampling.num_steps, levels)
  phrase = (f"{steps} steps of {levels} levels ({origin}={n}"
            + (", 0 = every level" if n == 0 else "") + ")")
  if cfg.sampling.method == "annealed_langevin":
    phrase += f", {cfg.sampling.n_steps_each} Langevin steps each"
  return steps, phrase


def default_name(cfg, method, steps, step, num) -> str:
  name = f"samples_{step}_{method}"
  if cfg.family == "diffusion":
    name += f"_s{steps}"
    if method == "ddim":
      name += f"_eta{float(cfg.sampling.eta):g}"
  name += f"_seed{_SEED.value}"
  if num == 0:
    name = name.replace("samples_", "eval_", 1)
  return name


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
  need_mem = num * per * 4 * 2 + (num * per if family.to_uint8 is not None else 0)
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


def _png(imgs):
  """The grid of images.save_grid as a PIL image (written atomically by the caller)."""
  grid = images.make_grid(imgs)
  up = max(1, images.GRID_MIN_TILE // imgs.shape[1])
  grid = grid.repeat(up, axis=0).repeat(up, axis=1)
  return Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)


def _gb(n: int) -> str:
  return f"{n / 2**30:.1f} GB" if n >= 2**28 else f"{n / 2**20:.0f} MB"

if __name__ == "__main__":
  _define_config_flag(sys.argv)
  cli.run(main)

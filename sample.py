"""Draw samples from a trained run (EMA parameters of its latest checkpoint).

  python sample.py --workdir=runs/ddpm_cifar10 --num_samples=1000 \
      [--sampler=ddim --steps=50 --config.sampling.eta=0.0 ...] [--fid] [--bpd]

Writes <out>/samples.png (a grid of the first 256) and <out>/samples.npz
(uint8 [N, H, W, C] under the key ``arr_0``, as improved-diffusion writes it),
where <out> defaults to <workdir>/samples_<step>_<sampler>. The run's config is
read from <workdir>/config.json; any of it can be overridden with --config.*.
Sampling is sharded over all local devices; N need not divide the batch size.
Only the EMA parameters are restored: no optimizer is built and no training
data is read (the test split is read for --bpd; --fid reads the training split
once to cache its statistics).
"""

import os
import signal
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Ctrl-C while the libraries load: nothing is written yet; one line, exit 2.
signal.signal(signal.SIGINT, lambda *_: (print(
    "error: interrupted (Ctrl-C) before sampling; nothing was written.",
    file=sys.stderr, flush=True), os._exit(2)))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402
from ml_collections import config_flags  # noqa: E402
from tqdm import tqdm  # noqa: E402

from configs import base  # noqa: E402
from diffusion import cli, compile_cache, families, xla_cpu  # noqa: E402
from diffusion.io import workdir as runs  # noqa: E402
from diffusion.config import checks as config_check
from diffusion import evals as evaluators
from diffusion.io import images
from diffusion.train import sharding  # noqa: E402
from diffusion.families import vae_pictures  # noqa: E402
from diffusion.errors import ConfigError  # noqa: E402

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
                           "<workdir>/samples_<step>_<sampler>).")
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
  workdir = None
  for i, arg in enumerate(argv):
    if arg.startswith("--workdir="):
      workdir = arg.split("=", 1)[1]
    elif arg == "--workdir" and i + 1 < len(argv):
      workdir = argv[i + 1]
  config = base.get_config()
  if workdir and os.path.isfile(os.path.join(workdir, "config.json")):
    config = runs.load_config(workdir)
  config_flags.DEFINE_config_dict("config", config, "The run's config (from the workdir).")


def main(argv):
  del argv
  signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on: KeyboardInterrupt
  cli.quiet_logs()
  compile_cache.enable()
  xla_cpu.configure()
  cli.run_main(run, ConfigError)


def _check_flags() -> None:
  """Every numeric flag, before anything is built (one-line errors)."""
  if _NUM.value <= 0:
    raise ConfigError(f"--num_samples={_NUM.value} is not valid; it must be > 0.")
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
  # Build the evaluators first: a missing weights file fails now, not after sampling.
  requested = list(dict.fromkeys(
      [name for name, on in (("bpd", _BPD.value), ("fid", _FID.value)) if on] + _EVAL.value))
  evals = {ev.name: ev for ev in evaluators.make_evaluators(family, workdir, requested,
                                                             seed=_SEED.value)}
  params, step = runs.restore_ema_params(workdir, family, _STEP.value)
  mesh = sharding.make_mesh(jax.local_devices())
  params = sharding.replicate(params, mesh)

  batch = _BATCH.value or cfg.sampling.batch_size
  batch = -(-min(batch, _NUM.value) // mesh.size) * mesh.size  # a multiple of the devices
  sample_fn = family.sample_fn(batch, out_sharding=NamedSharding(
      mesh, PartitionSpec(sharding.DATA_AXIS)))
  method = cfg.sampling.method if cfg.family == "diffusion" else cfg.sampling.output
  bar = tqdm(total=_NUM.value, unit="img", file=sys.stderr) if _PROGRESS.value else None
  start = time.time()
  x = families.draw(sample_fn, params, _NUM.value, batch, jax.random.PRNGKey(_SEED.value),
                    on_chunk=bar.update if bar is not None else None)
  if bar is not None:
    bar.close()
  seconds = time.time() - start
  print(f"sampled {len(x)} with {method} from step {step} in {seconds:.1f}s "
        f"({len(x) / seconds:.2f} samples/s)", flush=True)

  out = _OUT.value or os.path.join(workdir, f"samples_{step}_{method}")
  os.makedirs(out, exist_ok=True)
  imgs = family.to_uint8(x)
  if imgs is not None:
    images.save_grid(os.path.join(out, "samples.png"), imgs[:256])
    np.savez(os.path.join(out, "samples.npz"), arr_0=imgs)
    print(f"wrote {out}/samples.png and samples.npz (uint8 {imgs.shape})", flush=True)
  else:
    np.savez(os.path.join(out, "samples.npz"), arr_0=x)
    print(f"wrote {out}/samples.npz (float32 {x.shape})", flush=True)

  if cfg.family == "vae":
    written = vae_pictures.write_pictures(family, params, out,
                                          jax.random.fold_in(jax.random.PRNGKey(_SEED.value), 1))
    print(f"wrote {', '.join(os.path.basename(w) for w in written)} to {out}", flush=True)
  if "elbo" in evals:
    evals["elbo"].workdir = out
    evals["elbo"].run(params, step)
    r = evals["elbo"].last
    print(f"{r['split']} ({r['num_examples']} images, binarization {r['binarization']}): "
          f"log p(x) >= {r['log_px_nats']:.3f} +- {r['log_px_se']:.3f} nats "
          f"({r['log_px_bpd']:.4f} bits/dim; importance sampling, k = {r['iw_samples']}), ELBO "
          f"{r['elbo_nats']:.3f} +- {r['elbo_se']:.3f} nats ({r['elbo_bpd']:.4f} bits/dim); "
          f"written to {out}/likelihood_{step}.json", flush=True)
  if "bpd" in evals:
    ev = evals["bpd"]
    ev.run(params, step)
    r = ev.last
    print(f"bits/dim on {r['num_examples']} {cfg.data.dataset}/{cfg.data.eval_split} "
          f"examples: {r['bpd']:.4f} +- {r['bpd_se']:.4f} (prior term {r['prior_bpd']:.2e}; "
          "full T-term bound, EMA params, x0 clipped as DDPM)", flush=True)
    np.savez(os.path.join(out, "bpd.npz"), terms_bpd=r["terms_bpd"], bpd=r["bpd"],
             bpd_se=r["bpd_se"])
  if "fid" in evals:
    stats = evals["fid"].score(imgs)
    print(f"{len(imgs)} samples vs the {cfg.data.dataset}/{cfg.data.split} statistics "
          "(FID Inception, pytorch-fid weights): " +
          "  ".join(f"{k[5:]}={v:.4f}" for k, v in stats.items()), flush=True)
  if "classifier_fid" in evals:
    evals["classifier_fid"].score(imgs)
    r = evals["classifier_fid"].last
    print(f"{r['num_samples']} samples, {cfg.data.dataset} classifier (test accuracy "
          f"{r['classifier_accuracy']:.3f}): cfid {r['cfid']:.2f} (floor, {r['floor_num_images']} "
          f"test images: {r['cfid_floor']:.2f}); confident {r['confident']:.1%} over "
          f"{r['classes']:.0f} classes (real test images: {r['confident_real']:.1%} over "
          f"{r['classes_real']:.0f})", flush=True)


if __name__ == "__main__":
  _define_config_flag(sys.argv)
  app.run(main, flags_parser=cli.parse_flags)

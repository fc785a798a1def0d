"""Draw samples from a trained run (EMA parameters of its latest checkpoint).

  python sample.py --workdir=runs/ddpm_cifar10 --num_samples=1000 \
      [--sampler=ddim --steps=50 --config.sampling.eta=0.0 ...] [--fid] [--bpd]

Writes <out>/samples.png (a grid of the first 256) and <out>/samples.npz
(uint8 [N, H, W, C] under the key ``arr_0``, as improved-diffusion writes it),
where <out> defaults to <workdir>/samples_<step>_<sampler>. The run's config is
read from <workdir>/config.json; any of it can be overridden with --config.*.
Sampling is sharded over all local devices; N need not divide the batch size.
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from diffusion import cli  # noqa: E402

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
                         "training set (needs --config.eval.inception_weights).")
_BPD = flags.DEFINE_bool("bpd", False, "Compute bits/dim on config.eval.bpd_num_examples "
                         "of the eval split (VP variants only).")
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
  config = None
  if workdir and os.path.exists(os.path.join(workdir, "config.json")):
    from diffusion.trainer import load_config
    config = load_config(workdir)
  if config is None:
    from configs import base
    config = base.get_config()
  config_flags.DEFINE_config_dict("config", config, "The run's config (from the workdir).")


def main(argv):
  del argv
  cli.quiet_logs()
  from diffusion.errors import ConfigError
  cli.run_main(run, ConfigError)


def run():
  import jax
  import numpy as np

  from diffusion import config_check, images, training
  from diffusion.data import to_uint8
  from diffusion.errors import ConfigError
  from diffusion.trainer import build, make_sample_fn

  workdir = _WORKDIR.value
  if not os.path.exists(os.path.join(workdir, "config.json")):
    raise ConfigError(f"--workdir={workdir} has no config.json; point it at a training run.")
  config = flags.FLAGS.config
  if _SAMPLER.value is not None:
    config.sampling.method = _SAMPLER.value
  if _STEPS.value is not None:
    config.sampling.num_steps = _STEPS.value
  mesh = training.make_mesh(jax.local_devices())
  config_check.validate(config, num_devices=1)
  if _NUM.value <= 0:
    raise ConfigError(f"--num_samples={_NUM.value} is not valid; it must be > 0.")

  process, module, source = build(config)
  net = _check_requests(config, process, source)  # fail before hours of sampling, not after
  state = _restore_state(config, module, source, workdir, _STEP.value)
  step = int(state.step)
  params = training.replicate(state.ema_params, mesh)

  batch = _BATCH.value or config.sampling.batch_size
  batch = -(-min(batch, _NUM.value) // mesh.size) * mesh.size  # a multiple of the devices
  sample_fn = make_sample_fn(module, process, config, (batch, *source.shape), source.x_range,
                             out_sharding=jax.sharding.NamedSharding(
                                 mesh, jax.sharding.PartitionSpec(training.DATA_AXIS)))
  method = config.sampling.method
  out = _OUT.value or os.path.join(workdir, f"samples_{step}_{method}")
  os.makedirs(out, exist_ok=True)

  num_calls = -(-_NUM.value // batch)
  bar = None
  if _PROGRESS.value:
    from tqdm import tqdm
    bar = tqdm(total=_NUM.value, unit="img", file=sys.stderr)
  start, chunks = time.time(), []
  for i in range(num_calls):
    key = jax.random.fold_in(jax.random.PRNGKey(_SEED.value), i)
    chunks.append(np.asarray(sample_fn(params, key)))
    if bar is not None:
      bar.update(min(batch, _NUM.value - i * batch))
  if bar is not None:
    bar.close()
  x = np.concatenate(chunks)[: _NUM.value]
  seconds = time.time() - start
  print(f"sampled {len(x)} with {method} from step {step} in {seconds:.1f}s "
        f"({len(x) / seconds:.2f} samples/s)", flush=True)

  if x.ndim == 4:
    imgs = to_uint8(x, config.data.centered)
    images.save_grid(os.path.join(out, "samples.png"), imgs[:256],
                     upscale=max(1, 64 // x.shape[1]))
    np.savez(os.path.join(out, "samples.npz"), arr_0=imgs)
    print(f"wrote {out}/samples.png and samples.npz (uint8 {imgs.shape})", flush=True)
  else:
    np.savez(os.path.join(out, "samples.npz"), arr_0=x)
    print(f"wrote {out}/samples.npz (float32 {x.shape})", flush=True)

  if _BPD.value:
    _report_bpd(config, module, process, params, out)
  if _FID.value:
    _report_fid(config, net, imgs, workdir)


def _restore_state(config, module, source, workdir, step):
  """The TrainState of checkpoint ``step`` (-1: latest), shaped from the config."""
  from diffusion import checkpoints, training
  from diffusion.errors import ConfigError
  target = training.abstract_train_state(module, training.make_optimizer(config.optim),
                                         source.shape)
  ckpt = checkpoints.Checkpointer(workdir, keep=config.training.keep_checkpoints)
  try:
    if step >= 0:
      if step not in ckpt.steps():
        raise ConfigError(f"--checkpoint_step={step} is not in {ckpt.directory} "
                          f"(available: {ckpt.steps()}).")
      return ckpt.restore(step, target)
    state, found = ckpt.restore_latest(target)
    if found is None:
      raise ConfigError(f"no readable checkpoint in {ckpt.directory}; train first.")
    return state
  finally:
    ckpt.close()


def _report_bpd(config, module, process, params, workdir):
  """Bits/dim on the eval split: DDPM's calc_bpd_loop on discrete 8-bit data."""
  import jax
  import numpy as np

  from diffusion import evaluation
  from diffusion.data import make_source
  from diffusion.model_fn import make_eps_fn
  source = make_source(config.data, split=config.data.eval_split)
  eps_fn = make_eps_fn(module, params, process, config.model)
  result = evaluation.bpd_of_source(eps_fn, process, source, config.eval.bpd_num_examples,
                                    config.eval.batch_size, jax.random.PRNGKey(_SEED.value),
                                    config.diffusion.var_type)
  print(f"bits/dim on {result['num_examples']} {config.data.dataset}/{config.data.eval_split} "
        f"examples: {result['bpd']:.4f} +- {result['bpd_se']:.4f} (prior term "
        f"{result['prior_bpd']:.2e}; full T-term bound, EMA params, x0 clipped as DDPM)",
        flush=True)
  np.savez(os.path.join(workdir, "bpd.npz"), terms_bpd=result["terms_bpd"],
           bpd=result["bpd"], bpd_se=result["bpd_se"])


def _check_requests(config, process, source):
  """Checks --bpd / --fid can run on this run; returns the loaded Inception net."""
  from diffusion.errors import ConfigError
  image = len(source.shape) == 3
  if _BPD.value:
    if not hasattr(process, "alphas_cumprod"):
      raise ConfigError("--bpd applies to VP variants (ddpm, dpm); this run is NCSN (VE), "
                        "which has no discrete decoder; drop --bpd.")
    if not image or not config.data.centered:
      raise ConfigError("--bpd scores 8-bit images in [-1, 1] (data.centered=True) with "
                        "DDPM's discretized decoder; this run's data does not qualify.")
  if _FID.value:
    if not image:
      raise ConfigError("--fid needs image data; this run's data.dataset is not an image set.")
    from diffusion import inception
    return inception.load_inception(config.eval.inception_weights)
  return None


def _report_fid(config, net, imgs, workdir):
  """FID / IS / KID of the samples against the training split's Inception features."""
  from diffusion import evaluation
  from diffusion.data import make_source
  train = make_source(config.data, split=config.data.split)
  stats = evaluation.fid_of_samples(
      imgs, net, train, config.eval.fid_num_samples, workdir,
      f"{config.data.dataset}_{config.data.split}_{config.data.image_size}px")
  print(f"{len(imgs)} samples vs {min(train.num_examples, config.eval.fid_num_samples)} "
        f"{config.data.dataset}/{config.data.split} images (FID Inception, pytorch-fid "
        "weights): " + "  ".join(f"{k}={v:.4f}" for k, v in stats.items()), flush=True)


if __name__ == "__main__":
  _define_config_flag(sys.argv)
  app.run(main, flags_parser=cli.parse_flags)

"""Validation of a whole config before anything is built or compiled.

Each check raises :class:`diffusion.errors.ConfigError` with one line that names
the field and the fix. ``train.py`` and ``sample.py`` call :func:`validate`
first, so a typo costs a second, not a compile.
"""

from diffusion.errors import ConfigError, check_choice, check_positive

VARIANTS = ("ddpm", "ncsn", "dpm")
LOSSES = ("mse", "hybrid", "kl")
VAR_TYPES = ("fixedlarge", "fixedsmall", "learned_range")
LOSS_WEIGHTINGS = ("none", "snr", "min_snr_5")
MODELS = ("unet", "mlp", "analytic")
DTYPES = ("float32", "bfloat16")
SAMPLERS = ("ancestral", "ddim", "annealed_langevin")


def validate(config, num_devices: int = 1) -> None:
  """Checks every section of ``config``; raises ConfigError on the first problem."""
  _check_diffusion(config.diffusion)
  _check_data(config.data)
  _check_combinations(config)
  _check_model(config.model, config.data, config.diffusion)
  _check_optim(config.optim)
  _check_training(config.training, num_devices)
  _check_sampling(config.sampling, config.diffusion)
  _check_eval(config.eval, config.diffusion)
  if config.eval.every % config.training.steps_per_call:
    raise ConfigError(
        f"eval.every={config.eval.every} is not a multiple of training.steps_per_call="
        f"{config.training.steps_per_call}; events happen between compiled calls.")


def _check_diffusion(d) -> None:
  from diffusion.processes import make_process  # validates schedule and its numbers
  check_choice("diffusion.variant", d.variant, VARIANTS)
  check_choice("diffusion.loss", d.loss, LOSSES)
  check_choice("diffusion.var_type", d.var_type, VAR_TYPES)
  check_choice("diffusion.loss_weighting", d.loss_weighting, LOSS_WEIGHTINGS)
  if d.variant == "ncsn" and (d.loss != "mse" or d.var_type == "learned_range"):
    raise ConfigError(
        f"diffusion.loss={d.loss!r} / var_type={d.var_type!r} needs a VP process; NCSN (VE) "
        "trains with loss='mse' (denoising score matching) and a fixed variance.")
  if d.var_type == "learned_range" and d.loss == "mse":
    raise ConfigError(
        "diffusion.var_type='learned_range' needs a variance term in the loss; "
        "set diffusion.loss='hybrid' or 'kl'.")
  if d.loss == "hybrid" and d.var_type != "learned_range":
    raise ConfigError(
        f"diffusion.loss='hybrid' trains the variance only, so it needs "
        f"diffusion.var_type='learned_range' (got {d.var_type!r}).")
  check_choice("diffusion.decoder", d.get("decoder", "discretized"),
               ("discretized", "gaussian"))
  check_positive("diffusion.hybrid_lambda", d.hybrid_lambda, allow_zero=True)
  make_process(d)


def _check_data(data) -> None:
  from diffusion.data import check_config  # names, sizes and flags; reads no files
  check_config(data)


def _check_model(m, data, d) -> None:
  check_choice("model.name", m.name, MODELS)
  check_choice("model.dtype", m.dtype, DTYPES)
  check_choice("model.cond", m.cond, ("index", "log_sigma"))
  if m.cond == "log_sigma" and d.variant != "ncsn":
    raise ConfigError("model.cond='log_sigma' needs a VE process (diffusion.variant=ncsn).")
  if m.name == "analytic":
    return
  want = data.num_channels * (2 if d.var_type == "learned_range" else 1)
  if m.out_channels != want:
    raise ConfigError(
        f"model.out_channels={m.out_channels} does not fit data.num_channels="
        f"{data.num_channels} with diffusion.var_type={d.var_type!r}; set "
        f"--config.model.out_channels={want}.")
  if not 0.0 <= m.dropout < 1.0:
    raise ConfigError(f"model.dropout={m.dropout} is not valid; it must be in [0, 1).")
  if m.name != "unet":
    return
  if not m.ch_mult or any(c <= 0 for c in m.ch_mult):
    raise ConfigError(f"model.ch_mult={tuple(m.ch_mult)} is not valid; give positive "
                      "multipliers, one per resolution, e.g. (1, 2, 2, 2).")
  check_positive("model.num_res_blocks", m.num_res_blocks)
  if m.ch <= 0 or m.ch % 32:
    raise ConfigError(f"model.ch={m.ch} is not valid; GroupNorm(32) needs a positive "
                      "multiple of 32.")
  levels = len(m.ch_mult)
  if data.image_size % 2 ** (levels - 1):
    raise ConfigError(
        f"data.image_size={data.image_size} is not divisible by 2^(len(model.ch_mult)-1)="
        f"{2 ** (levels - 1)}; change the image size or use fewer model.ch_mult levels.")
  resolutions = [data.image_size // 2 ** i for i in range(levels)]
  for r in m.attn_resolutions:
    if r not in resolutions:
      raise ConfigError(
          f"model.attn_resolutions contains {r}, which is not a U-Net resolution; "
          f"choose from {resolutions}.")


def _check_optim(o) -> None:
  check_choice("optim.optimizer", o.optimizer, ("adam", "adamw", "rmsprop"))
  check_positive("optim.lr", o.lr)
  check_positive("optim.warmup_steps", o.warmup_steps, allow_zero=True)
  check_positive("optim.grad_clip", o.grad_clip, allow_zero=True)
  check_positive("optim.eps", o.eps)
  for name in ("beta1", "beta2"):
    if not 0.0 <= o[name] < 1.0:
      raise ConfigError(f"optim.{name}={o[name]} is not valid; it must be in [0, 1).")


def _check_training(t, num_devices: int) -> None:
  for name in ("num_train_steps", "batch_size", "log_every", "checkpoint_every",
               "steps_per_call", "keep_checkpoints"):
    if not isinstance(t[name], int) or t[name] <= 0:
      raise ConfigError(f"training.{name}={t[name]!r} is not valid; it must be an integer > 0.")
  if not isinstance(t.sample_every, int) or t.sample_every < 0:
    raise ConfigError(f"training.sample_every={t.sample_every!r} is not valid; "
                      "it must be an integer >= 0 (0 = no sample grids).")
  if not 0.0 <= t.ema_decay < 1.0:
    raise ConfigError(f"training.ema_decay={t.ema_decay} is not valid; it must be in [0, 1) "
                      "(0 disables the EMA).")
  if t.batch_size % num_devices:
    raise ConfigError(
        f"training.batch_size={t.batch_size} is not divisible by the {num_devices} devices; "
        f"use a multiple of {num_devices}.")
  for name in ("log_every", "checkpoint_every", "sample_every"):
    if t[name] % t.steps_per_call:
      raise ConfigError(
          f"training.{name}={t[name]} is not a multiple of training.steps_per_call="
          f"{t.steps_per_call}; events happen between compiled calls.")


def _check_sampling(s, d) -> None:
  from diffusion.samplers import settings_from_config  # every field, with its allowed values
  settings = settings_from_config(s)
  check_positive("sampling.batch_size", s.batch_size)
  T = d.num_timesteps
  if settings.method == "annealed_langevin" and settings.num_steps not in (0, T):
    raise ConfigError(f"sampling.num_steps={settings.num_steps} is not valid for "
                      "annealed_langevin, which visits every level; set it to 0.")
  if settings.num_steps > T:
    raise ConfigError(f"sampling.num_steps={settings.num_steps} is not valid; it must be "
                      f"<= diffusion.num_timesteps={T} (0 = every level).")


def _check_combinations(config) -> None:
  """Choices that are valid alone but not together."""
  from diffusion.data import dataset_info
  d, data, m = config.diffusion, config.data, config.model
  toy = dataset_info(data.dataset).kind == "toy"
  if m.name == "unet" and toy:
    raise ConfigError(f"model.name='unet' needs images, but data.dataset={data.dataset!r} is "
                      "2-D toy data; use model.name='mlp' (or 'analytic').")
  if m.name == "mlp" and not toy:
    raise ConfigError(f"model.name='mlp' is for 2-D toy data, but data.dataset={data.dataset!r}"
                      " is an image set; use model.name='unet'.")
  bound = d.loss in ("hybrid", "kl")
  decoder = d.get("decoder", "discretized")
  if bound and decoder == "discretized" and (toy or data.uniform_dequantization):
    raise ConfigError(
        "diffusion.decoder='discretized' scores 8-bit pixels, but the data are continuous "
        f"(data.dataset={data.dataset!r}, uniform_dequantization={data.uniform_dequantization}); "
        "set diffusion.decoder='gaussian' or use undequantized images.")
  if d.schedule == "jsd" and (bound or not config.sampling.clip_x0):
    raise ConfigError(
        "diffusion.schedule='jsd' ends at alpha_bar_T = 0, where x0 cannot be recovered from "
        "eps; use it only with loss='mse' and sampling.clip_x0=True, or use 'dpm' (the DPM "
        "code's version, alpha_bar_T ~ 1/T).")


def _check_eval(e, d) -> None:
  check_positive("eval.every", e.every, allow_zero=True)
  check_positive("eval.bpd_num_examples", e.bpd_num_examples)
  check_positive("eval.fid_num_samples", e.fid_num_samples)
  check_positive("eval.batch_size", e.batch_size)
  if e.every and e.fid and not e.inception_weights:
    raise ConfigError(
        "eval.fid=True needs eval.inception_weights: the path of the converted FID "
        "Inception weights (.npz); see README 'Evaluation'.")

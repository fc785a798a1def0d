"""Shared base config: every field the project reads, with its default.

Paper configs (``configs/<variant>/<dataset>.py``) call :func:`get_config` with
their variant and then change only what their paper changes. Every field can be
overridden on the command line, e.g. ``--config.diffusion.schedule=cosine``.

Variant defaults (the paper's process, schedule, loss and sampler) are set by
:func:`get_config` from ``VARIANT_DEFAULTS``; see the README's config reference.
"""

import ml_collections

# The paper's choices for each variant. A plain dict, read only by get_config.
VARIANT_DEFAULTS = {
    # Ho et al. 2020: VP, linear beta 1e-4 -> 0.02, T=1000, L_simple, ancestral
    # sampling with fixedlarge variance (reference sheet section 4).
    "ddpm": dict(
        schedule="linear", num_timesteps=1000, loss="mse", var_type="fixedlarge",
        sampler="ancestral", centered=True, uniform_dequantization=False,
    ),
    # Song & Ermon 2019: VE, geometric sigma 1 -> 0.01, L=10, DSM with
    # lambda(sigma)=sigma^2 (= eps-MSE), annealed Langevin (section 2).
    "ncsn": dict(
        schedule="geometric", num_timesteps=10, loss="mse", var_type="fixedlarge",
        sampler="annealed_langevin", centered=False, uniform_dequantization=True,
    ),
    # Sohl-Dickstein et al. 2015: VP with the DPM code's fixed schedule, learned
    # reverse variance, trained on the variational bound (section 1).
    "dpm": dict(
        # Not dequantized: the bound's t=0 term is DDPM's discretized decoder on
        # the 8-bit pixels, which takes the place of the paper's dequantization.
        schedule="dpm", num_timesteps=1000, loss="kl", var_type="learned_range",
        sampler="ancestral", centered=True, uniform_dequantization=False,
    ),
}


def get_config(variant: str = "ddpm") -> ml_collections.ConfigDict:
  """Returns the full default config for ``variant`` (ddpm | ncsn | dpm)."""
  if variant not in VARIANT_DEFAULTS:
    raise ValueError(
        f"variant={variant!r} is not valid; choose one of {sorted(VARIANT_DEFAULTS)}.")
  v = VARIANT_DEFAULTS[variant]
  config = ml_collections.ConfigDict()

  # ---- diffusion: process, schedule and loss ------------------------------
  d = config.diffusion = ml_collections.ConfigDict()
  d.variant = variant            # ddpm | ncsn | dpm; ddpm/dpm -> VP, ncsn -> VE
  d.schedule = v["schedule"]     # VP: linear|quad|warmup10|warmup50|const|jsd|cosine|sigmoid|dpm
  #                                VE: geometric
  d.num_timesteps = v["num_timesteps"]  # T for VP; number of sigma levels L for VE
  d.beta_start = 1e-4            # VP linear-family schedules (DDPM code)
  d.beta_end = 0.02
  d.cosine_s = 0.008             # Improved DDPM cosine offset
  d.sigma_min = 0.01             # VE ladder, ascending with t: sigmas[0] = sigma_min
  d.sigma_max = 1.0
  d.loss = v["loss"]             # mse (L_simple / DSM) | hybrid (mse + lambda*L_vlb) | kl (L_vlb)
  d.var_type = v["var_type"]     # fixedlarge | fixedsmall | learned_range
  d.hybrid_lambda = 0.001        # Improved DDPM lambda for the hybrid loss
  d.loss_weighting = "none"      # per-t weight on the eps-MSE: none | snr | min_snr_5
  d.clip_x0 = False              # clip x0_hat in the training bound (DDPM code: no)
  d.decoder = "discretized"      # t=0 term of the bound: discretized (8-bit images, DDPM)
  #                                | gaussian (continuous data, e.g. 2-D toy sets)

  # ---- data ----------------------------------------------------------------
  data = config.data = ml_collections.ConfigDict()
  data.dataset = "cifar10"       # see README: digits, mnist, fashion_mnist, cifar10, ...
  data.image_size = 32
  data.num_channels = 3
  data.centered = v["centered"]  # True: [-1, 1] (DDPM); False: [0, 1] (NCSN)
  data.uniform_dequantization = v["uniform_dequantization"]
  data.random_flip = True
  data.tfds_data_dir = ""        # "" = tfds default (~/tensorflow_datasets)
  data.data_dir = ""             # files for cifar10_sample / npz / image folders
  data.split = "train"
  data.eval_split = "test"
  data.device_resident = True    # hold uint8 data on device when it fits
  # Toy 2-D mixture (NCSN Fig. 2-3): 0.8 N((5,5), I) + 0.2 N((-5,-5), I).
  data.mixture_weights = (0.8, 0.2)
  data.mixture_means = ((5.0, 5.0), (-5.0, -5.0))
  data.mixture_stds = (1.0, 1.0)

  # ---- model ----------------------------------------------------------------
  m = config.model = ml_collections.ConfigDict()
  m.name = "unet"                # unet | mlp | analytic
  m.ch = 128
  m.ch_mult = (1, 2, 2, 2)
  m.num_res_blocks = 2
  m.attn_resolutions = (16,)
  m.dropout = 0.1
  m.resamp_with_conv = True
  m.out_channels = 3             # C, or 2C when diffusion.var_type=learned_range
  m.conditional = True           # False: the network ignores the noise level
  m.cond = "index"               # noise-level input: index (t) | log_sigma (VE only)
  m.scale_by_sigma = False       # NCSNv2 technique 3: output read as s(x)/sigma
  m.dtype = "float32"            # compute dtype: float32 | bfloat16 (params stay float32)
  m.hidden_dims = (128, 128, 128)  # mlp only

  # ---- optimisation -----------------------------------------------------------
  o = config.optim = ml_collections.ConfigDict()
  o.optimizer = "adam"           # adam | adamw | rmsprop
  o.lr = 2e-4
  o.beta1 = 0.9
  o.beta2 = 0.999                # also RMSProp's decay of the squared-gradient average
  o.eps = 1e-8
  o.weight_decay = 0.0
  o.warmup_steps = 5000          # linear warm-up from 0 (DDPM code)
  o.grad_clip = 1.0              # global-norm clipping; 0 disables
  o.decay_steps = 0              # > 0: lr *= decay_rate every decay_steps (smoothly)
  o.decay_rate = 1.0
  o.min_lr = 0.0                 # floor of the decayed lr

  # ---- training loop ---------------------------------------------------------
  t = config.training = ml_collections.ConfigDict()
  t.num_train_steps = 800_000
  t.batch_size = 128             # global batch, split over all devices
  t.seed = 0
  t.ema_decay = 0.9999           # 0 disables EMA (then EMA params == params)
  t.steps_per_call = 1           # train steps scanned into one compiled call
  t.log_every = 100
  t.checkpoint_every = 5000
  t.keep_checkpoints = 3
  t.sample_every = 10_000
  t.num_samples = 64             # images in each sample grid

  # ---- sampling ----------------------------------------------------------------
  s = config.sampling = ml_collections.ConfigDict()
  s.method = v["sampler"]        # ancestral | ddim | annealed_langevin
  s.num_steps = 0                # 0 = every level; ddim: number of sub-sequence steps
  s.skip_type = "uniform"        # ddim step selection: uniform | quad
  s.eta = 0.0                    # ddim noise scale (0 deterministic, 1 = DDPM posterior)
  s.n_steps_each = 100           # Langevin steps per sigma level
  s.step_size = 2e-5             # Langevin epsilon (NCSN code: 2e-5)
  s.langevin_form = "code"       # code: x + a*s + sqrt(2a) z | paper: x + a/2*s + sqrt(a) z
  s.denoise = False              # NCSNv2 final denoising step
  s.init = "prior"               # prior: N(0, I) or N(0, sigma_max^2 I) | uniform: U[0,1]
  s.clip_x0 = True               # clip predicted x0 in ancestral/ddim
  s.var_type = "fixedlarge"      # ancestral reverse variance: fixedlarge (beta_t) | fixedsmall
  #                                (posterior beta~_t); learned_range is used automatically
  #                                when the model outputs a variance (DPM / Improved DDPM)
  s.batch_size = 256

  # ---- evaluation ----------------------------------------------------------------
  e = config.eval = ml_collections.ConfigDict()
  e.every = 0                    # training steps between evaluations; 0 = never
  e.bpd = True                   # bits/dim on the eval split (VP variants only)
  e.bpd_num_examples = 256
  e.fid = False                  # needs e.inception_weights
  e.fid_num_samples = 50_000
  e.inception_weights = ""       # path to converted pt_inception-2015-12-05 weights (.npz)
  e.batch_size = 256
  return config

"""The README's first command: DDPM on the built-in 8x8 digits in under three minutes on 2 CPU cores.

configs/ddpm/digits.py shrunk for a first look: the same data and DDPM process (linear
beta 1e-4 -> 0.02, T = 1000, L_simple), a smaller U-Net (ch 32, ch_mult (1, 2), one
ResBlock per resolution, no attention: 651,041 parameters), batch 64, 1,800 steps at a
higher learning rate (4e-3 after 100 warm-up steps, Adam beta2 0.99 so the second-moment
estimate keeps up with a run this short) with a fast EMA (0.995), and the sample grid
drawn with DPM-Solver++(2M) in 20 network evaluations (Lu et al. 2022; x0 clipped)
instead of 1,000 ancestral steps: the evaluations saved by the sampler went into
training. Measured (BENCHMARKS.md, "Quickstart"): the wall time from the command to the
grid, and the share of samples a calibrated digits classifier assigns confidently, beside
the same share for real test digits.
"""

from configs.ddpm import digits


def get_config():
  config = digits.get_config()
  config.model.num_res_blocks = 1
  config.model.attn_resolutions = ()
  config.optim.lr = 4e-3
  config.optim.beta2 = 0.99
  config.optim.warmup_steps = 100
  config.training.batch_size = 64
  config.training.num_train_steps = 1800
  config.training.ema_decay = 0.995
  config.training.log_every = 200
  config.training.checkpoint_every = 900
  config.training.sample_every = 1800
  config.sampling.method = "dpm_solver"
  config.sampling.num_steps = 20
  config.training.grid_method = "dpm_solver"
  config.training.grid_steps = 20
  return config

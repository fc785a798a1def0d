"""DPM on the 2-D swiss roll (Sohl-Dickstein et al. 2015, App. D.1.1).

T=40 steps of the DPM code's fixed schedule, a reverse process with learned
mean and variance trained on the variational bound (diffusion.loss='kl'), here
with a small MLP in place of the paper's per-t RBF readout. Paper: K = 2.35 bits
(K - L_null = 6.45 bits) on its swiss roll, Table 1; our bound is reported in
bits/dim of the continuous 2-D points, so compare shapes, not these numbers.
"""

from configs import base


def get_config():
  config = base.get_config("dpm")
  config.data.dataset = "swiss_roll"
  config.data.num_channels = 2
  config.data.image_size = 1
  config.data.uniform_dequantization = False
  config.data.random_flip = False
  config.diffusion.num_timesteps = 40
  config.diffusion.decoder = "gaussian"   # continuous 2-D points: a density at t=0
  config.model.name = "mlp"
  config.model.hidden_dims = (128, 128, 128)
  config.model.out_channels = 4
  config.model.dropout = 0.0
  config.optim.lr = 1e-3
  config.optim.warmup_steps = 100
  config.training.batch_size = 256
  config.training.num_train_steps = 20_000
  config.training.ema_decay = 0.999
  config.training.log_every = 500
  config.training.checkpoint_every = 5000
  config.training.sample_every = 0
  config.training.num_samples = 1024
  config.sampling.clip_x0 = False
  return config

"""NCSNv2 on CIFAR-10 (Song & Ermon 2020) with the paper's RefineNet (NCSNv2).

NCSNv2 §3 and its configs/cifar10.yml: techniques 1-2 give sigma_max=50, L=232 geometric
levels down to 0.01; technique 3 reads the network output as s(x)/sigma
(model.scale_by_sigma) of a noise-unconditional network (model.conditional=False;
with eps-prediction this is eps_hat = -h(x)); technique 4 gives 5 Langevin steps per level with
epsilon=6.2e-6; technique 5 is EMA 0.999; final denoising step. Adam 1e-4,
batch 128, 300k iterations, data in [0, 1] without dequantization.

Network: the official NCSNv2 class (model.name='ncsnv2', ngf 128, instance norm++ without
conditioning, 29,694,083 parameters), whose output h is read as s = h/sigma.
Paper: FID 10.87, IS 8.40 +- 0.07 with denoising.
"""

from configs import base


def get_config():
  config = base.get_config("ncsn")
  config.diffusion.sigma_min = 0.01
  config.diffusion.sigma_max = 50.0
  config.diffusion.num_timesteps = 232
  config.data.dataset = "cifar10"
  config.data.uniform_dequantization = False
  config.model.name = "ncsnv2"
  config.model.ngf = 128
  config.model.out_channels = 3
  config.model.scale_by_sigma = True
  config.model.conditional = False
  config.optim.lr = 1e-4
  config.optim.warmup_steps = 0
  config.optim.grad_clip = 0.0
  config.training.num_train_steps = 300_000
  config.training.ema_decay = 0.999
  config.sampling.init = "uniform"
  config.sampling.n_steps_each = 5
  config.sampling.step_size = 6.2e-6
  config.sampling.denoise = True
  return config

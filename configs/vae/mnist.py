"""A mean-field VAE on dynamically binarized MNIST (Kingma & Welling 2013).

Gaussian encoder q(z|x) and Bernoulli decoder p(x|z), MLPs 784-512-512-(2x32) and
32-512-512-784 (ReLU); trained on the importance-weighted bound with k = 3 samples
(Burda et al. 2016), Adam 1e-3 with a cosine decay to 1e-5 over 34k steps of 128 (73
epochs; k = 3 is the largest k whose 34k steps fit 30 minutes on 2 CPU cores),
every pixel ~ Bernoulli(intensity) anew each step. Evaluated on the 10,000 test
images binarized once (data.binarize_seed): test ELBO and log p(x) by importance
sampling with k = 1,000 samples of q (eval.elbo).

Reference: the mean-field VAE code the tutorial links to reports -97.10 nats
(importance sampling, 65k iterations) on Larochelle's *fixed* binarization; this
uses dynamic binarization, so compare with care. Published one-stochastic-layer MLP
results: about -86.8 (VAE) and -85.5 (IWAE, k = 5) after 3,280 epochs (Burda et al.
Table 1). Measured here: REPRODUCING.md. Needs prepared tfds data:
`python -m diffusion.data prepare mnist --manual_dir DIR`, DIR the folder with the
four official IDX .gz files (train-images-idx3-ubyte.gz, ...).
"""

from configs import base
from diffusion.sweeps import product, sweep


def get_config():
  config = base.get_config("vae")
  config.vae.objective = "iwae"
  config.vae.num_samples = 3
  config.model.latent_dim = 32
  config.model.hidden_dims = (512, 512)
  config.optim.lr = 1e-3
  config.optim.lr_schedule = "cosine"
  config.optim.decay_steps = 34_000
  config.optim.min_lr = 1e-5
  config.training.num_train_steps = 34_000
  config.training.batch_size = 128
  config.training.steps_per_call = 50
  config.training.log_every = 1000
  config.training.checkpoint_every = 5_000
  config.training.sample_every = 17_000
  config.eval.elbo.every = 34_000
  return config


def sweep_kl_weight():
  """beta-VAE: the KL weight of the ELBO (1 = the bound), 4 points, one population."""
  return product(sweep("vae.objective", ["elbo"]), sweep("vae.kl_weight", [0.5, 1.0, 2.0, 4.0]))

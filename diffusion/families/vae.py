"""The variational autoencoder: ELBO, reparameterization, importance-weighted bound, family.

For data x (D binary pixels), latent z ∈ R^L, prior p(z) = N(0, I), encoder
q(z|x) = N(μ(x), diag σ²(x)) and Bernoulli decoder p(x|z) (Kingma & Welling 2013):

  ELBO(x) = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))  ≤ log p(x)                        (eq. 3)
  z = μ + σ ⊙ ε,  ε ~ N(0, I)    (the reparameterization trick, §2.4: the expectation
                                   becomes differentiable in μ and σ)
  KL(q ‖ p) = ½ Σ_l (μ_l² + σ_l² − log σ_l² − 1)   (App. B; ``losses.normal_kl``, the same
                                                     Gaussian KL as the diffusion bound)
  log p(x) ≥ L_k = E[log (1/k) Σ_i p(x, z_i)/q(z_i|x)],  z_i ~ q  (Burda et al. 2016, eq. 8;
           L_1 = ELBO, L_k grows with k towards log p(x))

The diffusion bound is the ELBO of a hierarchical VAE whose encoder is fixed: the
forward process q(x_{1:T} | x_0). Its terms match: L_T ↔ the prior KL, L_{t−1} (t > 1)
↔ KL terms between encoder and decoder at each layer, L_0 ↔ the reconstruction
−log p(x_0 | x_1) (DDPM eq. 5).

Everything is in nats per example; bits/dim = nats / (D ln 2).
"""

import math
from typing import Any, Callable, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from diffusion import models
from diffusion.config import VAERunConfig
from diffusion.data import to_uint8
from diffusion.core.losses import normal_kl
from diffusion.models.network import DTYPES
from diffusion.models.vae_mlp import VAE
from diffusion.families import vae_pictures
from diffusion.families.sampling_record import SamplingRecord

Array = jax.Array


def reparameterize(mean: Array, log_var: Array, eps: Array) -> Array:
  """z = μ + σ ε (broadcasts a leading sample axis of ``eps``)."""
  return mean + jnp.exp(0.5 * log_var) * eps


def kl_to_standard_normal(mean: Array, log_var: Array) -> Array:
  """KL(N(μ, diag e^{log σ²}) ‖ N(0, I)) in nats, summed over the last axis: [B, L] -> [B]."""
  return jnp.sum(normal_kl(mean, log_var, 0.0, 0.0), axis=-1)


def bernoulli_log_likelihood(x: Array, logits: Array) -> Array:
  """log p(x | logits) = Σ_d x_d log σ(ℓ_d) + (1 − x_d) log σ(−ℓ_d), over all axes after
  the leading ones of ``x`` (x [B, ...]; logits [..., B, ...]) -> [..., B]."""
  ll = x * jax.nn.log_sigmoid(logits) + (1.0 - x) * jax.nn.log_sigmoid(-logits)
  return jnp.sum(ll.reshape(*ll.shape[:ll.ndim - x.ndim + 1], -1), axis=-1)


def gaussian_log_density(z: Array, mean: Array, log_var: Array) -> Array:
  """log N(z; μ, diag σ²), summed over the last axis."""
  return -0.5 * jnp.sum(math.log(2 * math.pi) + log_var + jnp.square(z - mean) *
                        jnp.exp(-log_var), axis=-1)


def elbo_terms(encode: Callable, decode: Callable, x: Array, key: Array,
               num_samples: int = 1) -> Dict[str, Array]:
  """Per-example ELBO pieces with ``num_samples`` reparameterized draws of z.

  Returns dict of [B] float32: recon = E_q log p(x|z) (a Monte-Carlo mean), kl (analytic),
  elbo = recon − kl, and iw = the importance-weighted bound L_k with the same draws.
  """
  mean, log_var = encode(x)
  eps = jax.random.normal(key, (num_samples, *mean.shape), mean.dtype)
  z = reparameterize(mean, log_var, eps)                           # [k, B, L]
  log_px_z = bernoulli_log_likelihood(x, decode(z))                 # [k, B]
  kl = kl_to_standard_normal(mean, log_var)
  log_w = log_px_z + gaussian_log_density(z, 0.0, 0.0) - gaussian_log_density(z, mean, log_var)
  iw = jax.nn.logsumexp(log_w, axis=0) - math.log(num_samples)
  recon = jnp.mean(log_px_z, axis=0)
  return {"recon": recon, "kl": kl, "elbo": recon - kl, "iw": iw}


def iw_log_likelihood(encode: Callable, decode: Callable, x: Array, key: Array,
                      num_samples: int, chunk: int = 100) -> Dict[str, Array]:
  """log p(x) ≈ L_k (Burda et al. 2016) with k = ``num_samples`` in chunks of ``chunk``
  samples (a running log-sum-exp, so memory is that of one chunk); also the ELBO of
  the first draw. Returns dict of [B]: log_px, elbo."""
  mean, log_var = encode(x)
  chunks = -(-num_samples // chunk)

  def body(carry, i):
    eps = jax.random.normal(jax.random.fold_in(key, i), (chunk, *mean.shape), mean.dtype)
    z = reparameterize(mean, log_var, eps)
    log_w = (bernoulli_log_likelihood(x, decode(z)) + gaussian_log_density(z, 0.0, 0.0)
             - gaussian_log_density(z, mean, log_var))
    keep = (i * chunk + jnp.arange(chunk)) < num_samples            # the last chunk's excess
    log_w = jnp.where(keep[:, None], log_w, -jnp.inf)
    return jnp.logaddexp(carry, jax.nn.logsumexp(log_w, axis=0)), None

  total, _ = jax.lax.scan(body, jnp.full(mean.shape[:1], -jnp.inf), jnp.arange(chunks))
  eps = jax.random.normal(jax.random.fold_in(key, chunks), mean.shape, mean.dtype)
  z = reparameterize(mean, log_var, eps)
  elbo = bernoulli_log_likelihood(x, decode(z)) - kl_to_standard_normal(mean, log_var)
  return {"log_px": total - math.log(num_samples), "elbo": elbo}


class VAEFamily:
  """The VAE of a whole config: what the loop, sampling and evaluators need of it."""

  trainable = True

  def __init__(self, config: VAERunConfig):
    self.config = c = config
    self.example_shape: Tuple[int, ...] = c.data.example_shape
    self.module = models.VAE_NETWORKS[c.model.name](
        data_shape=self.example_shape, latent_dim=c.model.latent_dim,
        hidden_dims=c.model.hidden_dims, activation=c.model.activation,
        dtype=DTYPES[c.model.dtype])

  @property
  def num_dims(self) -> int:
    return int(np.prod(self.example_shape))

  def init_params(self, key: Array) -> Any:
    return self.module.init(key, jnp.zeros((1, *self.example_shape), jnp.float32))["params"]

  def abstract_params(self) -> Any:
    return jax.eval_shape(self.init_params, jax.random.PRNGKey(0))

  def encoder(self, params) -> Callable:
    return lambda x: self.module.apply({"params": params}, x, method=VAE.encode)

  def decoder(self, params) -> Callable:
    return lambda z: self.module.apply({"params": params}, z, method=VAE.decode)

  def loss_hparams(self) -> Dict[str, float]:
    return {"kl_weight": self.config.vae.kl_weight}

  def loss_fn(self, params, batch: Array, key: Array,
              hparams: Dict[str, Array]) -> Tuple[Array, Dict[str, Array]]:
    """Mean negative ELBO (β-weighted KL) or negative L_k (iwae) of a batch, in nats.
    Metrics: recon (−E_q log p(x|z)), kl, elbo, and bpd of the ELBO."""
    v = self.config.vae
    terms = elbo_terms(self.encoder(params), self.decoder(params), batch, key, v.num_samples)
    if v.objective == "iwae":
      loss = -jnp.mean(terms["iw"])
    else:
      loss = jnp.mean(-terms["recon"] + hparams.get("kl_weight", v.kl_weight) * terms["kl"])
    elbo = jnp.mean(terms["elbo"])
    return loss, {"recon": -jnp.mean(terms["recon"]), "kl": jnp.mean(terms["kl"]),
                  "elbo": elbo, "elbo_bpd": -elbo / (self.num_dims * math.log(2.0))}

  def heldout_losses(self, params, batch: Array, key: Array) -> Array:
    """Per-example loss of ``batch`` [B, ...] as :meth:`loss_fn` computes it (the config's
    KL weight), z's noise drawn from ``key``: a fixed key is a fixed (x, ε). [B] nats."""
    v = self.config.vae
    terms = elbo_terms(self.encoder(params), self.decoder(params), batch, key, v.num_samples)
    if v.objective == "iwae":
      return -terms["iw"]
    return -terms["recon"] + v.kl_weight * terms["kl"]

  def sample_fn(self, num: int, settings=None,
                out_sharding: Optional[jax.sharding.Sharding] = None,
                on_progress: Optional[Callable[[int, int], None]] = None) -> Callable:
    """Jitted ``(params, key) -> samples [num, *example_shape]`` in [0, 1]: the decoded
    means of z ~ N(0, I), or Bernoulli draws from them (``sampling.output``). One
    decoder pass: ``on_progress`` (the diffusion family's) is never called."""
    del on_progress
    output = (settings or self.config.sampling).output
    latent = self.config.model.latent_dim

    def sample(params, key):
      k_z, k_x = jax.random.split(key)
      probs = jax.nn.sigmoid(self.decoder(params)(jax.random.normal(k_z, (num, latent))))
      if output == "bernoulli":
        return jax.random.bernoulli(k_x, probs).astype(jnp.float32)
      return probs

    return jax.jit(sample, out_shardings=out_sharding)

  def describe_sampling(self, settings=None) -> str:
    """How ``sample_fn`` draws, for a log line: ``"mean, one decoder pass"``."""
    return f"{(settings or self.config.sampling).output}, one decoder pass"

  def sampling_record(self, settings=None, steps_from: str = "") -> SamplingRecord:
    """``sampling.output`` (mean or bernoulli), one decoder pass; nothing else changes the
    samples (``steps_from`` is the diffusion family's and unused)."""
    del steps_from
    output = (settings or self.config.sampling).output
    return SamplingRecord(sampler=output, steps=1, phrase="one decoder pass", name=output)

  def write_extras(self, params, out_dir: str, key: jax.Array) -> List[str]:
    """The VAE's pictures beside ``sample.py``'s samples (:mod:`vae_pictures`):
    reconstructions, prior samples and, for a 2-D latent, the manifold and latents."""
    return vae_pictures.write_pictures(self, params, out_dir, key)

  def to_uint8(self, samples) -> np.ndarray:
    return to_uint8(samples, centered=False)

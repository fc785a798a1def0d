"""Exact bits/dim (``eval.ode_bpd``) through the probability-flow ODE (Song et al. 2021, App. D.2).

log p(x) by the instantaneous change of variables along the ODE of
:mod:`diffusion.samplers.ode` with the Hutchinson–Skilling trace estimator
(``num_probes`` Rademacher or Gaussian probes per image), on ``num_examples``
images of ``data.eval_split``. Pixels k ∈ {0..255} are uniformly dequantized as
score_sde, u = (k + U)/256, U ~ U[0, 1)^D, and mapped to model space x = 2u − 1
(centered) or u; then (score_sde's ``offset``)
  bpd = −log p(x)/(D ln 2) + 8 − log₂(width),   width = 2 (centered) or 1,
an upper bound in expectation on the discrete data's bits/dim. The result has
the standard error over images (of each image's probe-mean) and the probes' own
spread, and the ODE field evaluations (NFE) per batch. Diffusion family, image
data only (a one-line ConfigError otherwise).
"""

import math
import os
from typing import Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

import diffusion.config.evals
from diffusion.data import make_source
from diffusion.errors import ConfigError
from diffusion.evals import metrics
from diffusion.evals.base import Evaluator, eval_key
from diffusion.io import atomic
from diffusion.io.bars import announce
from diffusion.samplers import ode


def ode_bpd_of_images(eps_fn, process, images: np.ndarray, centered: bool, key, cfg,
                      on_progress=None) -> Dict[str, float]:
  """Bits/dim of uint8 ``images`` [N, H, W, C] under the probability-flow ODE.

  ``cfg`` supplies num_probes, probe, batch_size, ode_solver, rtol, atol.
  ``on_progress(done, total)`` counts ODE solves (a batch and a probe each).
  Returns bpd (mean over images and probes), bpd_se (over images), probe_sd
  (mean within-image sd over probes; 0 for one probe), nfe (mean ODE-field
  evaluations per solve), num_examples, per_image [N] (bpd, probe-mean).
  """
  images = np.asarray(images)
  n, d = len(images), int(np.prod(images.shape[1:]))
  width = 2.0 if centered else 1.0
  per = np.zeros((n, cfg.num_probes))
  nfes = []
  for p in range(cfg.num_probes):
    for i in range(0, n, cfg.batch_size):
      k_deq, k_probe = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, p), i))
      k = jnp.asarray(images[i:i + cfg.batch_size], jnp.float32)
      u = (k + jax.random.uniform(k_deq, k.shape)) / 256.0              # uniform dequantization
      x = 2.0 * u - 1.0 if centered else u
      logp, nfe = ode.log_likelihood(eps_fn, process, x, k_probe, cfg.probe,
                                     ode_solver=cfg.ode_solver, rtol=cfg.rtol, atol=cfg.atol)
      per[i:i + len(k), p] = (-np.asarray(logp, np.float64) / (d * math.log(2.0))
                              + 8.0 - math.log2(width))
      nfes.append(nfe)
      if on_progress is not None:
        on_progress(len(nfes), cfg.num_probes * -(-n // cfg.batch_size))
  img = per.mean(axis=1)
  return dict(bpd=float(img.mean()),
              bpd_se=float(img.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
              probe_sd=float(per.std(axis=1, ddof=1).mean()) if cfg.num_probes > 1 else 0.0,
              nfe=float(np.mean(nfes)), num_examples=n, per_image=img)


class OdeBitsPerDim(Evaluator):
  """bits/dim of ``num_examples`` test images through the probability-flow ODE."""
  name = "ode_bpd"

  @staticmethod
  def check_applies(config) -> None:
    """ConfigError unless the run is of a family this evaluator's section is for (the
    diffusion family: it has a process) and its data are 8-bit images."""
    if config.family not in diffusion.config.evals.EVALUATORS[OdeBitsPerDim.name][1]:
      raise ConfigError(f"eval.ode_bpd (the probability-flow ODE's bits/dim) applies to the "
                        f"diffusion family; this run's family is {config.family!r} (use "
                        "eval.elbo).")
    if config.data.is_toy:
      raise ConfigError(f"eval.ode_bpd scores 8-bit images; this run's data.dataset "
                        f"{config.data.dataset!r} is 2-D points.")

  def __init__(self, cfg, family, workdir: str = "", seed: int = 0,
               output_dir: Optional[str] = None):
    super().__init__(cfg, family, workdir, seed, output_dir)
    self._source = None

  def run(self, params, step: int, samples=None) -> Dict[str, float]:
    del samples  # scores the data
    data = self.family.config.data
    if self._source is None:
      self._source = make_source(data, split=data.eval_split)
    images = metrics.source_images(self._source, self.cfg.num_examples)
    solves = self.cfg.num_probes * -(-len(images) // self.cfg.batch_size)
    announce(f"ode_bpd: log p(x) of {len(images)} {data.dataset}/{data.eval_split} images "
             f"through the probability-flow ODE: {solves} adaptive solve(s) "
             f"({self.cfg.num_probes} probe(s), batches of up to {self.cfg.batch_size}), "
             "each about 100-300 network calls")
    with self.bar("ODE solves", "solve") as bar:
      result = ode_bpd_of_images(self.family.eps_fn(params), self.family.process, images,
                                 data.centered, eval_key(self.seed, 5, step), self.cfg,
                                 on_progress=bar)
    self.last = result
    if self.output_dir:
      atomic.write_npz(os.path.join(self.output_dir, f"ode_bpd_{step}.npz"),
                       per_image=result["per_image"], bpd=result["bpd"],
                       bpd_se=result["bpd_se"], nfe=result["nfe"])
    return {"eval/ode_bpd": result["bpd"], "eval/ode_bpd_se": result["bpd_se"],
            "eval/ode_bpd_nfe": result["nfe"]}

  def summary(self) -> str:
    r, data = self.last, self.family.config.data
    return (f"ODE bits/dim on {r['num_examples']} {data.dataset}/{data.eval_split} examples: "
            f"{r['bpd']:.4f} +- {r['bpd_se']:.4f} (probe sd {r['probe_sd']:.4f}, "
            f"{self.cfg.num_probes} {self.cfg.probe} probe(s), {r['nfe']:.0f} NFE per solve, "
            f"rtol {self.cfg.rtol:g}, atol {self.cfg.atol:g}, dequantized as score_sde)")


EVALUATOR = OdeBitsPerDim

"""The VAE's test ELBO and importance-weighted log p(x) (``eval.elbo``).

Burda et al. 2016: log p(x) ≈ L_k, a lower bound that grows with k. Writes
``likelihood_<step>.json`` to the output folder.
"""

import math
from typing import Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from diffusion.data import fixed_binarization, make_source
from diffusion.evals.base import Evaluator, eval_key
from diffusion.io.bars import announce
from diffusion.families import vae


class LikelihoodBound(Evaluator):
  """The VAE's test ELBO and importance-weighted log p(x) (``eval.elbo``).

  On ``num_examples`` eval-split images, binarized once with ``data.binarize_seed``
  (the training split is binarized anew every step): log p(x) ≈ L_k, the
  log-mean-exp of k = ``iw_samples`` importance weights p(x, z)/q(z|x) with z ~ q
  (Burda et al. 2016; the estimate is a lower bound that grows with k), and the
  single-sample ELBO. Means with their standard errors, in nats and bits/dim.
  """
  name = "elbo"
  MAXIMISED = ("eval/log_px", "eval/elbo")

  def __init__(self, cfg, family, workdir: str = "", seed: int = 0,
               output_dir: Optional[str] = None):
    super().__init__(cfg, family, workdir, seed, output_dir)
    self._x = None
    k, chunk = cfg.iw_samples, min(cfg.iw_samples, 100)

    def bound(params, x, key):
      return vae.iw_log_likelihood(family.encoder(params), family.decoder(params), x, key, k,
                                   chunk)
    self._bound = jax.jit(bound)

  def test_images(self) -> np.ndarray:
    """The evaluated images in [0, 1]: the split's first num_examples, binarized once."""
    if self._x is None:
      data = self.family.config.data
      images = make_source(data, split=data.eval_split).arrays["images"][:self.cfg.num_examples]
      self._x = (fixed_binarization(images, data.binarize_seed) if data.binarize != "none"
                 else images.astype(np.float32) / 255.0)
    return self._x

  def run(self, params, step: int, samples=None) -> Dict[str, float]:
    del samples  # scores the data, not samples
    x, b = self.test_images(), self.cfg.batch_size
    key = eval_key(self.seed, 4, step)
    parts = {"log_px": [], "elbo": []}
    announce(f"elbo: log p(x) of {len(x)} test images by importance sampling, "
             f"k = {self.cfg.iw_samples}, batches of {b}")
    with self.bar("importance sampling", "img") as bar:
      for i in range(0, len(x), b):
        out = self._bound(params, jnp.asarray(x[i:i + b]), jax.random.fold_in(key, i))
        for name in parts:
          parts[name].append(np.asarray(out[name], np.float64))
        bar(min(i + b, len(x)), len(x))
    n, dims = len(x), self.family.num_dims
    result = {"step": int(step), "num_examples": n, "iw_samples": self.cfg.iw_samples,
              "split": self.family.config.data.eval_split,
              "binarization": (f"fixed, seed {self.family.config.data.binarize_seed}"
                               if self.family.config.data.binarize != "none" else "none")}
    for name, values in parts.items():
      v = np.concatenate(values)
      result[f"{name}_nats"] = float(v.mean())
      result[f"{name}_se"] = float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
      result[f"{name}_bpd"] = float(-v.mean() / (dims * math.log(2.0)))
    self.last = result
    self.write_json(f"likelihood_{step}.json", result)
    return {"eval/log_px": result["log_px_nats"], "eval/log_px_se": result["log_px_se"],
            "eval/log_px_bpd": result["log_px_bpd"], "eval/elbo": result["elbo_nats"],
            "eval/elbo_se": result["elbo_se"], "eval/elbo_bpd": result["elbo_bpd"]}

  def summary(self) -> str:
    r = self.last
    return (f"{r['split']} ({r['num_examples']} images, binarization {r['binarization']}): "
            f"log p(x) >= {r['log_px_nats']:.3f} +- {r['log_px_se']:.3f} nats "
            f"({r['log_px_bpd']:.4f} bits/dim; importance sampling, k = {r['iw_samples']}), ELBO "
            f"{r['elbo_nats']:.3f} +- {r['elbo_se']:.3f} nats ({r['elbo_bpd']:.4f} bits/dim); "
            f"written to {self.output_dir}/likelihood_{r['step']}.json")


EVALUATOR = LikelihoodBound

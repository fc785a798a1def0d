"""Held-out loss (``eval.heldout_loss``): the family's loss on one fixed held-out set.

The default metric of a search (``train.py --search``): the training loss itself is
measured on another batch at every step (noisy), and on another (x0, t, ε) in every run;
this one is the same set for every run that shares its seed, so runs compare on it:

  x0   the first ``num_examples`` of ``data.eval_split`` (images, scaled as training scales
       them, with a fixed dequantization key), or as many fresh points of a toy distribution;
  t, ε the family's own draw of its loss (diffusion: t ~ U{0..T−1}, ε ~ N(0, I)) from one
       key per chunk of ``batch_size`` examples, all derived from ``seed``;

and the loss is evaluated with the EMA parameters in inference mode (no dropout,
:meth:`heldout_losses` of the family). A search sets ``seed`` to its own, so every trial
scores the same (x0, t, ε). Two runs that differ in what the loss measures (the schedule,
T, the weighting: ``sweeps.summary.LOSS_DEFINING``) are not comparable on it.

Config section (``config.eval.heldout_loss``): ``every`` (steps, 0 = off), ``num_examples``,
``batch_size``, ``seed``. Result: ``eval/heldout_loss`` (the mean over the set) and
``eval/heldout_loss_se`` (its standard error over examples; differences between runs are
paired on one set, so they are known better than two standard errors suggest).
"""

from typing import Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from diffusion.data import make_source
from diffusion.evals.base import Evaluator
from diffusion.evals.metrics import source_images

# Salt of the held-out set's keys: apart from the seeds training and sampling use.
SALT = 7


def heldout_keys(seed: int) -> tuple:
  """(data key, loss key) of the held-out set of ``seed``."""
  base = jax.random.fold_in(jax.random.PRNGKey(seed), SALT)
  return tuple(jax.random.split(base))


def heldout_data(family, num_examples: int, seed: int) -> np.ndarray:
  """The set's x0: float32 [N, *example_shape] in model space (N ≤ num_examples: an image
  split may hold fewer)."""
  data = family.config.data
  source = make_source(data, split=data.eval_split)
  data_key, _ = heldout_keys(seed)
  if getattr(source, "is_image", False):
    images = source_images(source, num_examples)
    return np.asarray(source.preprocess(jnp.asarray(images), data_key), np.float32)
  return np.asarray(source.get_batch({}, data_key, num_examples), np.float32)


class HeldoutLoss(Evaluator):
  """The family's loss on one fixed set of (x0, t, ε) drawn from ``cfg.seed``."""
  name = "heldout_loss"

  def __init__(self, cfg, family, workdir: str = "", seed: int = 0,
               output_dir: Optional[str] = None):
    super().__init__(cfg, family, workdir, seed, output_dir)
    self._x0: Optional[np.ndarray] = None
    self._losses = jax.jit(family.heldout_losses)

  def data(self) -> np.ndarray:
    """x0 of the set, read on first use."""
    if self._x0 is None:
      self._x0 = heldout_data(self.family, self.cfg.num_examples, self.cfg.seed)
    return self._x0

  def losses(self, params) -> np.ndarray:
    """Per-example losses [N] float64: chunk i of ``batch_size`` examples takes the loss
    key ``fold_in(loss key, i)``; the last chunk is padded to one compiled shape."""
    x0, b = self.data(), int(self.cfg.batch_size)
    _, loss_key = heldout_keys(self.cfg.seed)
    out = []
    for i, start in enumerate(range(0, len(x0), b)):
      chunk = x0[start:start + b]
      n = len(chunk)
      if n < b:
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - n, axis=0)])
      values = self._losses(params, jnp.asarray(chunk), jax.random.fold_in(loss_key, i))
      out.append(np.asarray(values, np.float64)[:n])
    return np.concatenate(out)

  def run(self, params, step: int, samples=None) -> Dict[str, float]:
    del samples  # scores held-out data, not samples
    values = self.losses(params)
    n = len(values)
    se = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    self.last = {"step": int(step), "heldout_loss": float(values.mean()), "heldout_loss_se": se,
                 "num_examples": n, "seed": int(self.cfg.seed)}
    return {"eval/heldout_loss": self.last["heldout_loss"], "eval/heldout_loss_se": se}

  def summary(self) -> str:
    r = self.last
    return (f"held-out loss on {r['num_examples']} fixed (x0, t, eps) of seed {r['seed']}: "
            f"{r['heldout_loss']:.5f} +- {r['heldout_loss_se']:.5f} (EMA params)")

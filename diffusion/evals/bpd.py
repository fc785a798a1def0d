"""Bits/dim (``eval.bpd``): DDPM's bound on test images, as its ``calc_bpd_loop``.

The full T-term bound (KL terms, discretized decoder, prior) on ``num_examples``
images of ``data.eval_split``, x̂₀ clipped; needs a VP process and 8-bit images
in [-1, 1]. Writes ``bpd.npz`` (the per-term means) to the output folder.
"""

import os
from typing import Dict, Optional

from diffusion.data import make_source
from diffusion.errors import ConfigError
from diffusion.evals import metrics
from diffusion.evals.base import Evaluator, eval_key
from diffusion.io import atomic
from diffusion.io.bars import announce


class BitsPerDim(Evaluator):
  """DDPM's bound on ``num_examples`` test images, with its standard error."""
  name = "bpd"
  SHORTCUT = ("Compute bits/dim on config.eval.bpd.num_examples of the eval split (VP "
              "variants only).")

  @staticmethod
  def check_applies(config) -> None:
    """ConfigError unless DDPM's bound is defined for this run (VP, 8-bit images in
    [-1, 1])."""
    if config.diffusion.process_kind != "vp":
      raise ConfigError("bits/dim (eval.bpd, --bpd) applies to VP variants (ddpm, dpm); "
                        "NCSN's VE process has no discrete decoder and no finite prior KL.")
    if config.data.is_toy or not config.data.centered:
      raise ConfigError("bits/dim (eval.bpd, --bpd) scores 8-bit images in [-1, 1] "
                        "(data.centered=True) with DDPM's discretized decoder; this run's "
                        f"data (data.dataset={config.data.dataset!r}, centered="
                        f"{config.data.centered}) does not qualify.")

  def __init__(self, cfg, family, workdir: str = "", seed: int = 0,
               output_dir: Optional[str] = None):
    super().__init__(cfg, family, workdir, seed, output_dir)
    self._source = None

  def run(self, params, step: int, samples=None) -> Dict[str, float]:
    del samples  # scores the data, not samples
    if self._source is None:  # the eval split is read on first use only
      data = self.family.config.data
      self._source = make_source(data, split=data.eval_split)
    data, T = self.family.config.data, self.family.process.num_timesteps
    n = min(self.cfg.num_examples, self._source.num_examples)
    batches = -(-n // self.cfg.batch_size)
    announce(f"bpd: DDPM's {T}-term bound on {n} {data.dataset}/{data.eval_split} images, "
             f"{batches} batch(es) of up to {self.cfg.batch_size} ({batches * T:,} network "
             "calls)")
    with self.bar("terms of the bound", "level") as bar:
      result = metrics.bpd_of_source(
          self.family.eps_fn(params), self.family.process, self._source,
          self.cfg.num_examples, self.cfg.batch_size, eval_key(self.seed, 2, step),
          self.family.config.diffusion.var_type, on_progress=bar if self.progress else None)
    self.last = result
    if self.output_dir:
      atomic.write_npz(os.path.join(self.output_dir, f"bpd_{step}.npz"),
                       terms_bpd=result["terms_bpd"], bpd=result["bpd"], bpd_se=result["bpd_se"])
    return {"eval/bpd": result["bpd"], "eval/bpd_se": result["bpd_se"]}

  def summary(self) -> str:
    r, data = self.last, self.family.config.data
    return (f"bits/dim on {r['num_examples']} {data.dataset}/{data.eval_split} examples: "
            f"{r['bpd']:.4f} +- {r['bpd_se']:.4f} (prior term {r['prior_bpd']:.2e}; full "
            "T-term bound, EMA params, x0 clipped as DDPM)")


EVALUATOR = BitsPerDim

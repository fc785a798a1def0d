"""FID / IS / KID (``eval.fid``) in the FID Inception network's features.

Samples against ``min(num_samples, N_train)`` training images, whose statistics
are computed once and cached in the workdir (the training data is read only then).
Writes ``fid_<step>.json`` to the output folder.
"""

from typing import Dict, Optional

import numpy as np

from diffusion.config import catalog
from diffusion.data import make_source
from diffusion.errors import ConfigError
from diffusion.evals import inception, metrics
from diffusion.evals.base import Evaluator
from diffusion.io.bars import announce


class FrechetInception(Evaluator):
  """FID / IS / KID (``eval.fid``) against the training split, in FID Inception features.

  Reference statistics of ``min(num_samples, N_train)`` training images are
  computed once and cached in the workdir; the training data is read only then.
  """
  name = "fid"
  SHORTCUT = ("Compute FID/IS/KID of the samples against the training set (needs "
              "--config.eval.fid.inception_weights).")
  SCORES_SAMPLES = True
  MAXIMISED = ("eval/is_mean",)

  @staticmethod
  def check_applies(config) -> None:
    """ConfigError unless the run's data are images (FID, IS, KID)."""
    if config.data.is_toy:
      raise ConfigError("FID (eval.fid, --fid) needs image data; this run's data.dataset "
                        f"{config.data.dataset!r} is 2-D points.")

  def __init__(self, cfg, family, workdir: str = "", seed: int = 0,
               output_dir: Optional[str] = None):
    super().__init__(cfg, family, workdir, seed, output_dir)
    self.net = inception.load_inception(cfg.inception_weights)  # ConfigError if missing

  def score(self, images_uint8: np.ndarray) -> Dict[str, float]:
    """FID, IS and KID of uint8 images [N, H, W, C] against the training split."""
    data = self.family.config.data
    info = catalog.dataset_info(data.dataset)
    known = info.num_examples.get(data.split)
    train = None
    if known is None:  # e.g. npz: the count needs the file
      train = make_source(data, split=data.split)
      known = train.num_examples
    n_ref = min(known, self.cfg.num_samples)

    def reference_features():
      source = train if train is not None else make_source(data, split=data.split)
      announce(f"fid: Inception features of {n_ref} {data.dataset}/{data.split} images, "
               "once (cached in the workdir)")
      with self.bar("reference features", "img") as bar:
        return self.net.features(metrics.source_images(source, n_ref), on_progress=bar)["pool"]

    ref = metrics.reference_stats(
        self.workdir, f"{data.dataset}_{data.split}_{data.image_size}px", n_ref,
        reference_features, keep_features=True)
    announce(f"fid: Inception features of {len(images_uint8)} samples")
    with self.bar("sample features", "img") as bar:
      feats = self.net.features(images_uint8, on_progress=bar)
    stats = metrics.sample_quality_metrics(feats, ref)
    self.last = dict(stats, num_samples=len(images_uint8))
    return {f"eval/{k}": v for k, v in stats.items()}

  def run(self, params, step: int, samples: Optional[np.ndarray] = None) -> Dict[str, float]:
    """Scores the uint8 ``samples`` given, or ``num_samples`` drawn here."""
    out = self.score(self.samples(params, step, samples, salt=3))
    self.write_json(f"fid_{step}.json", self.last)
    return out

  def summary(self) -> str:
    data = self.family.config.data
    return (f"{self.last['num_samples']} samples vs the {data.dataset}/{data.split} statistics "
            "(FID Inception, pytorch-fid weights): " +
            "  ".join(f"{k}={v:.4f}" for k, v in self.last.items() if k != "num_samples"))


EVALUATOR = FrechetInception

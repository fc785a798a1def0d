"""Sample quality for small data (``eval.classifier_fid``): a classifier trained here.

Writes ``classifier_fid_<step>.json`` to the output folder.
"""

from typing import Dict, Optional

import numpy as np

from diffusion.data import make_source
from diffusion.errors import ConfigError
from diffusion.evals import classifier, metrics
from diffusion.evals.base import Evaluator

CLASSIFIED_DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar10_sample")


class ClassifierFrechet(Evaluator):
  """Sample quality for small data (``eval.classifier_fid``).

  Features of :mod:`diffusion.evals.classifier`'s network, trained on the training split:
  cfid = Fréchet distance of ``num_samples`` samples against the training split's
  features; cfid_floor = the same for as many test images (at most the split), the
  best a model of the data can expect at that sample count; the classifier's test
  accuracy; and the share of samples it assigns one class with probability >=
  ``confidence`` with the number of classes among them, beside the same for the
  test images.
  """
  name = "classifier_fid"
  SCORES_SAMPLES = True
  MAXIMISED = ("eval/classifier_accuracy", "eval/confident", "eval/classes")

  @staticmethod
  def check_applies(config) -> None:
    """ConfigError unless the run's data are a set the classifier is trained on."""
    if config.data.dataset not in CLASSIFIED_DATASETS:
      raise ConfigError(f"classifier_fid needs a labelled image set "
                        f"({', '.join(CLASSIFIED_DATASETS)}); data.dataset="
                        f"{config.data.dataset!r}.")

  def __init__(self, cfg, family, workdir: str = "", seed: int = 0,
               output_dir: Optional[str] = None):
    super().__init__(cfg, family, workdir, seed, output_dir)
    self._net = self._ref = None
    self.real: Dict[str, float] = {}

  def _setup(self):
    if self._net is not None:
      return
    data = self.family.config.data
    train = make_source(data, split=data.split).arrays
    test = make_source(data, split=data.eval_split).arrays
    self._net = classifier.load_or_train(f"{data.dataset}_{data.image_size}px", train, test)
    feats = self._net.features(train["images"].astype(np.float32) / 255.0)
    self._ref = metrics.feature_statistics(feats)
    n_floor = min(self.cfg.num_samples, len(test["images"]))
    floor = self._stats(test["images"][:n_floor])
    self.real = {"cfid_floor": floor["cfid"], "confident_real": floor["confident"],
                 "classes_real": floor["classes"], "classifier_accuracy":
                 self._net.test_accuracy, "classifier_temperature": self._net.temperature,
                 "floor_num_images": n_floor}

  def _stats(self, images_uint8: np.ndarray) -> Dict[str, float]:
    x = np.asarray(images_uint8, np.float32) / 255.0
    mu, sigma = metrics.feature_statistics(self._net.features(x))
    probs = self._net.probs(x)
    confident = probs.max(axis=1) >= self.cfg.confidence
    return {"cfid": metrics.frechet_distance(mu, sigma, *self._ref),
            "confident": float(confident.mean()),
            "classes": float(len(np.unique(probs.argmax(axis=1)[confident])))}

  def score(self, images_uint8: np.ndarray) -> Dict[str, float]:
    """The metrics of uint8 samples [N, H, W, C] (N as given), with the real-data figures."""
    self._setup()
    out = self._stats(images_uint8)
    self.last = dict(out, **self.real, num_samples=len(images_uint8))
    return {f"eval/{k}": float(v) for k, v in self.last.items()
            if k not in ("num_samples", "floor_num_images")}

  def run(self, params, step: int, samples: Optional[np.ndarray] = None) -> Dict[str, float]:
    """Scores the uint8 ``samples`` given, or ``num_samples`` drawn here."""
    out = self.score(self.samples(params, step, samples, salt=5))
    self.write_json(f"classifier_fid_{step}.json", self.last)
    return out

  def summary(self) -> str:
    r, data = self.last, self.family.config.data
    return (f"{r['num_samples']} samples, {data.dataset} classifier (test accuracy "
            f"{r['classifier_accuracy']:.3f}): cfid {r['cfid']:.2f} (floor, "
            f"{r['floor_num_images']} test images: {r['cfid_floor']:.2f}); confident (calibrated, "
            f"T = {r['classifier_temperature']:.2f}) "
            f"{r['confident']:.1%} over {r['classes']:.0f} classes (real test images: "
            f"{r['confident_real']:.1%} over {r['classes_real']:.0f})")


EVALUATOR = ClassifierFrechet

"""diffusion/evals/classifier_fid.py: the digits classifier is accurate and cached, and its
Fréchet distance separates held-out digits from noise and blanks."""

import os

import numpy as np
import pytest


@pytest.fixture(scope="module")
def digits_classifier(tmp_path_factory):
  os.environ["DIFFUSION_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
  from diffusion import families  # pylint: disable=import-outside-toplevel
  from diffusion import evals  # pylint: disable=import-outside-toplevel
  from configs.ddpm import digits  # pylint: disable=import-outside-toplevel
  config = digits.get_config()
  config.eval.classifier_fid.num_samples = 297
  family = families.make_family(config)
  ev = evals.make_evaluators(family, str(tmp_path_factory.mktemp("w")),
                                  ["classifier_fid"])[0]
  ev._setup()  # pylint: disable=protected-access
  return ev


def test_classifier_is_accurate_and_cached(digits_classifier, tmp_path):
  from diffusion.evals import classifier  # pylint: disable=import-outside-toplevel
  assert digits_classifier.real["classifier_accuracy"] > 0.9
  files = os.listdir(os.environ["DIFFUSION_CACHE_DIR"])
  assert len(files) == 1 and files[0].startswith("classifier_digits_8px_")
  net = digits_classifier._net  # pylint: disable=protected-access
  again = classifier.load_or_train("digits_8px", {}, {})       # from the cache: no data needed
  assert again.test_accuracy == net.test_accuracy


def test_classifier_metric_separates_data_from_noise(digits_classifier):
  """Held-out digits score near the floor; noise and blanks far above it."""
  from diffusion.data import make_source  # pylint: disable=import-outside-toplevel
  ev = digits_classifier
  test = make_source(ev.family.config.data, split="test").arrays["images"]
  real = ev.score(test)
  floor = real["eval/cfid_floor"]
  assert real["eval/cfid"] == pytest.approx(floor, rel=1e-9)
  train = make_source(ev.family.config.data).arrays["images"][:297]
  assert ev.score(train)["eval/cfid"] < 3 * floor + 1.0
  rng = np.random.default_rng(0)
  noise = ev.score(rng.integers(0, 256, test.shape).astype(np.uint8))
  assert noise["eval/cfid"] > 8 * (floor + 1.0)       # measured: 691 vs a floor of 65
  blank = ev.score(np.zeros_like(test))
  assert blank["eval/cfid"] > 8 * (floor + 1.0) and blank["eval/classes"] <= 1
  # Calibrated (temperature fitted on the test split): a real digit is "confident" about as
  # often as the classifier is right (measured 76.8% at accuracy 93.3%), noise almost never.
  assert 0.7 < real["eval/confident"] <= real["eval/classifier_accuracy"]
  assert real["eval/classes"] == 10 and real["eval/classifier_temperature"] > 1.0
  assert noise["eval/confident"] < 0.3

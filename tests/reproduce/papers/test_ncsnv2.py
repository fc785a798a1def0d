"""diffusion/reproduce/papers/ncsnv2.py: NCSNv2's technique 1 on the shared MNIST files."""

import pytest

from diffusion.reproduce.registry import BASELINES


@pytest.mark.slow
@pytest.mark.needs_shared_data
def test_ncsnv2_techniques_on_mnist(shared_data, tmp_path, monkeypatch):
  from diffusion.data import prepare_dataset  # pylint: disable=import-outside-toplevel
  data_dir = tmp_path / "tfds"
  prepare_dataset("mnist", manual_dir=str(shared_data / "mnist"), data_dir=str(data_dir))
  b = BASELINES["ncsnv2_mnist_sigmas"]
  budget = b.tiers["cpu"]
  out = b.experiment(
      b, type(budget)(dict(budget.overrides, **{"data.tfds_data_dir": str(data_dir)})),
      str(tmp_path), 0)
  assert abs(out.measured["sigma_1"] - 16.8758) < 1e-4
  assert out.measured["num_levels"] == 101

"""Fixtures of the pretrained weights' tests: the tiny diffusers UNet2DModel imported once."""

import pytest

from diffusion.pretrained import import_weights

from tests.pretrained.test_importer import TINY, tiny_config


# One import for the session: the importer's, the diffusers reader's and the exporter's
# tests read it; none writes into it.
@pytest.fixture(scope="session")
def imported(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("pretrained") / "tiny_run")
  result = import_weights(TINY, workdir, config=tiny_config())
  return workdir, result

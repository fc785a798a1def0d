"""Test-wide settings: CPU only, no network, quiet TensorFlow."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# tfds must never try to download during tests (it would hang without network).
os.environ.setdefault("TFDS_DISABLE_DOWNLOAD", "1")

import pathlib

import pytest

from diffusion import cli

# The commands' start-up: tests compile many of the same programs (and the CLIs they start
# do too), so share them in the persistent cache; the CPU convolution kernel is fixed to
# Eigen so that the suite (and every command it starts) neither measures on a fresh machine
# nor depends on what a measurement chose (tests/test_xla_cpu.py tests the automatic choice).
os.environ.setdefault("DIFFUSION_CPU_CONVOLUTIONS", "eigen")
cli.start_computing()

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data():
  """Path of ../shared/data; skips the test when it is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"{SHARED_DATA} is absent (real MNIST/CIFAR files live there)")
  return SHARED_DATA


@pytest.fixture(scope="module")
def vp():
  """DDPM's process: linear beta 1e-4 -> 0.02, T=1000 (configs/base.py defaults)."""
  from configs.base import get_config
  from diffusion import make_process
  return make_process(get_config("ddpm").diffusion)


@pytest.fixture(scope="module")
def ve():
  """NCSN's process: geometric sigma 0.01 -> 1, L=10."""
  from configs.base import get_config
  from diffusion import make_process
  return make_process(get_config("ncsn").diffusion)

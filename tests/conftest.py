"""Test-wide settings: CPU only, no network, quiet TensorFlow; and the fixtures that tests
in several folders share (processes, the official NCSN checkpoints).

tests/ mirrors the package: tests/<subpackage>/test_<module>.py tests
diffusion/<subpackage>/<module>.py (test_init.py a package's __init__.py, test_main.py its
``python -m diffusion.<subpackage>`` command), tests/commands/ the train.py and sample.py
command lines, and tests/test_<module>.py the top-level modules and the repository's
configs/ and docs/; fixture files live in tests/fixtures/."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# tfds must never try to download during tests (it would hang without network).
os.environ.setdefault("TFDS_DISABLE_DOWNLOAD", "1")

import lzma
import pathlib

import pytest

import diffusion
from diffusion import cli, paths

# The commands' start-up: tests compile many of the same programs (and the CLIs they start
# do too), so share them in the persistent cache; the CPU convolution kernel is fixed to
# Eigen so that the suite (and every command it starts) neither measures on a fresh machine
# nor depends on what a measurement chose (tests/test_xla_cpu.py tests the automatic choice).
os.environ.setdefault("DIFFUSION_CPU_CONVOLUTIONS", "eigen")
cli.start_computing()

REPO = pathlib.Path(paths.REPO)
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


@pytest.fixture(scope="module")
def processes():
  return dict(
      vp=diffusion.make_process(dict(variant="ddpm", schedule="linear", num_timesteps=1000)),
      ve=diffusion.make_process(dict(variant="ncsn", schedule="geometric", num_timesteps=1000,
                                     sigma_min=0.01, sigma_max=50.0)))


@pytest.fixture(scope="module")
def released(tmp_path_factory):
  """name -> path of the decompressed checkpoint (the bytes torch.save wrote)."""
  folder = tmp_path_factory.mktemp("ncsn_releases")
  out = {}
  for xz in sorted((REPO / "tests" / "fixtures" / "ncsn").glob("*.pth.xz")):
    path = folder / xz.name[:-len(".xz")]
    path.write_bytes(lzma.decompress(xz.read_bytes()))
    out[xz.name[:-len(".pth.xz")]] = str(path)
  return out

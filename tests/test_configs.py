"""Every shipped config validates and builds what its docstring promises."""

import glob
import importlib.util
import os

import jax
import numpy as np
import pytest

from diffusion.config import checks as config_check
from diffusion.families import make_family
from diffusion import make_model, make_process
from diffusion.core.processes import VEProcess, VPProcess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(
    os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "configs", "*", "*.py"))
    if not p.endswith("__init__.py"))


def load(path):
  spec = importlib.util.spec_from_file_location(path.replace("/", "_")[:-3],
                                                os.path.join(REPO, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def test_there_are_configs_for_every_variant():
  for variant in ("ddpm", "ncsn", "dpm", "vae"):
    assert any(p.startswith(f"configs/{variant}/") for p in CONFIG_FILES)


@pytest.mark.parametrize("path", CONFIG_FILES)
def test_config_validates_and_builds(path):
  config = load(path)
  config_check.validate(config, num_devices=1)
  if config.family == "vae":
    family = make_family(config)
    params = family.abstract_params()
    assert 2 * config.model.latent_dim in {v.shape[-1] for v in jax.tree.leaves(params)}  # μ, log σ²
    return
  process = make_process(config.diffusion)
  expected = VEProcess if config.diffusion.variant == "ncsn" else VPProcess
  assert isinstance(process, expected)
  assert process.num_timesteps == config.diffusion.num_timesteps


def param_count(config, shape):
  module = make_model(config.model, data_cfg=config.data,
                      num_levels=config.diffusion.num_timesteps)
  x = jax.ShapeDtypeStruct((1, *shape), np.float32)
  c = jax.ShapeDtypeStruct((1,), np.float32)
  variables = jax.eval_shape(lambda x, c: module.init(jax.random.PRNGKey(0), x, c), x, c)
  return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(variables["params"]))


def test_ddpm_cifar10_config_builds_the_35_7m_unet():
  assert param_count(load("configs/ddpm/cifar10.py"), (32, 32, 3)) == 35_746_307


@pytest.mark.parametrize("path, name, count", [
    ("configs/ncsn/mnist.py", "ncsn", 7_638_657),
    ("configs/ncsn/cifar10.py", "ncsn", 30_117_635),
    ("configs/ncsn/ncsnv2_cifar10.py", "ncsnv2", 29_694_083),
    ("configs/ncsn/ncsnv2_celeba.py", "ncsnv2", 29_694_083),
    ("configs/ncsn/ncsnv2_church.py", "ncsnv2_deeper", 83_445_379),
    ("configs/ncsn/ncsnv2_bedroom.py", "ncsnv2_deeper", 83_445_379),
    ("configs/ncsn/ncsnv2_ffhq.py", "ncsnv2_deepest", 94_132_611),
])
def test_ncsn_configs_build_the_papers_networks(path, name, count):
  """Counts computed from the official code with its configs (ncsn, ncsnv2)."""
  config = load(path)
  size = config.data.image_size
  assert config.model.name == name
  assert param_count(config, (size, size, config.data.num_channels)) == count


def test_dpm_cifar10_config_has_learned_variance_outputs():
  config = load("configs/dpm/cifar10.py")
  assert param_count(config, (32, 32, 3)) == 35_749_766
  assert (config.diffusion.loss, config.diffusion.var_type) == ("kl", "learned_range")


def test_variant_defaults_follow_the_papers():
  ncsn = make_process(load("configs/ncsn/cifar10.py").diffusion)
  np.testing.assert_allclose(np.asarray(ncsn.sigmas),
                             np.geomspace(0.01, 1.0, 10), rtol=1e-6)
  v2 = make_process(load("configs/ncsn/ncsnv2_cifar10.py").diffusion)
  assert v2.num_timesteps == 232 and abs(float(v2.sigmas[-1]) - 50.0) < 1e-4
  ddpm = make_process(load("configs/ddpm/cifar10.py").diffusion)
  np.testing.assert_allclose(float(ddpm.alphas_cumprod[-1]), 4.035829765e-5, rtol=1e-5)
  dpm = make_process(load("configs/dpm/cifar10.py").diffusion)
  np.testing.assert_allclose(float(dpm.betas[0]), 0.001999989, rtol=1e-6)

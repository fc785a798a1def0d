"""The shipped configs/ files: every one validates and builds what its docstring
promises (the papers' networks, the released 256 px U-Net), with the papers' settings."""

import glob
import importlib
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusion.config import checks
from diffusion import families, make_model, make_process
from diffusion.families import make_family
from diffusion.core.processes import VEProcess, VPProcess
from diffusion.pretrained import importer
from diffusion.paths import REPO

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
  checks.validate(config, num_devices=1)
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


def _ncsn_refinenet_params(ngf: int, channels: int, levels: int) -> int:
  """CondRefineNetDilated's parameter count from its layer shapes (the official
  models/cond_refinenet_dilated.py read as a list of layers; no network is built)."""
  n, L = ngf, levels

  def conv(k, c_in, c_out, bias=True):
    return k * k * c_in * c_out + (c_out if bias else 0)

  def norm(c):                          # conditional IN++: [γ | α | β] per level
    return L * 3 * c

  def plain_block(c):                   # norm, conv, norm, conv; identity shortcut
    return 2 * norm(c) + 2 * conv(3, c, c)

  def dilated_down_block(c):            # conv1, conv2 and a 3x3 shortcut, all dilated
    return 2 * norm(c) + 3 * conv(3, c, c)

  def rcu(c, blocks):                   # blocks x 2 (norm, conv without bias)
    return blocks * 2 * (norm(c) + conv(3, c, c, bias=False))

  def refine(widths, features, end=False):
    total = sum(rcu(c, 2) for c in widths)
    if len(widths) > 1:                 # multi-resolution fusion: norm + conv per input
      total += sum(norm(c) + conv(3, c, features) for c in widths)
    crp = 2 * (norm(features) + conv(3, features, features, bias=False))
    return total + crp + rcu(features, 3 if end else 1)

  res1 = 2 * plain_block(n)
  res2 = (2 * norm(n) + conv(3, n, n) + conv(3, n, 2 * n) + conv(1, n, 2 * n)
          + plain_block(2 * n))
  res3 = res4 = dilated_down_block(2 * n) + plain_block(2 * n)
  refines = (refine([2 * n], 2 * n) + refine([2 * n, 2 * n], 2 * n)
             + refine([2 * n, 2 * n], n) + refine([n, n], n, end=True))
  ends = conv(3, channels, n) + norm(n) + conv(3, n, channels)
  return res1 + res2 + res3 + res4 + refines + ends


def test_ncsn_digits_refinenet_builds_ncsns_network_at_8px():
  """configs/ncsn/digits_refinenet.py: configs/ncsn/digits.py with NCSN's network at ngf
  16; it runs at 8 px, and the dilation-4 stage acts as 1x1 convolutions there (its
  docstring)."""
  config = load("configs/ncsn/digits_refinenet.py")
  unet = load("configs/ncsn/digits.py")
  for section in ("data", "diffusion", "optim", "training", "sampling", "eval"):
    assert config[section].to_dict() == unet[section].to_dict(), section
  assert (config.model.name, config.model.ngf, config.data.image_size) == ("ncsn", 16, 8)
  # The formula reproduces the official MNIST count (ngf 64) and the flax network's.
  assert _ncsn_refinenet_params(64, 1, 10) == 7_638_657
  assert param_count(config, (8, 8, 1)) == _ncsn_refinenet_params(16, 1, 10) == 518_817
  family = make_family(checks.validate(config))
  params = family.init_params(jax.random.PRNGKey(0))
  x = jax.random.uniform(jax.random.PRNGKey(1), (3, 8, 8, 1))
  t = jnp.array([0, 4, 9])
  eps = family.eps_fn(params)(x, t)
  assert eps.shape == (3, 8, 8, 1) and bool(jnp.all(jnp.isfinite(eps)))
  grads = jax.grad(lambda p: jnp.sum(family.eps_fn(p)(x, t) ** 2))(params)
  centre = np.zeros((3, 3), bool)
  centre[1, 1] = True
  for block, convs in (("res4_0", ("conv1", "conv2", "shortcut")), ("res4_1", ("conv1", "conv2"))):
    for name in convs:
      g = np.asarray(grads[block][name]["kernel"])
      assert np.all(g[~centre] == 0.0) and np.any(g[centre] != 0.0), (block, name)
  g = np.asarray(grads["res3_0"]["conv1"]["kernel"])
  assert np.any(g[~centre] != 0.0)      # dilation 2 still reaches pixels at 4x4


def test_base_config_sampling_section_is_valid():
  from configs import base  # pylint: disable=import-outside-toplevel
  from diffusion.config import SamplingConfig  # pylint: disable=import-outside-toplevel
  for variant in ("ddpm", "ncsn", "dpm"):
    s = SamplingConfig.parse(base.get_config(variant).sampling)
    assert s.var_type == "fixedlarge"
  assert SamplingConfig.parse(base.get_config("ncsn").sampling).method == "annealed_langevin"


def test_dpm_configs_do_not_clip_gradients():
  import importlib  # pylint: disable=import-outside-toplevel
  for name in ("cifar10", "digits", "swiss_roll", "mnist"):
    config = importlib.import_module(f"configs.dpm.{name}").get_config()
    assert config.optim.grad_clip == 0.0, name


@pytest.mark.parametrize("name", ["celebahq_256", "church_256", "bedroom_256", "cat_256"])
def test_256px_configs_build_the_released_114m_unet(name):
  config = importer.load_config_module(f"configs.ddpm.{name}")
  cfg = checks.validate(config)
  abstract = families.make_family(cfg).abstract_params()   # jax.eval_shape: no allocation
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract)) == 113_673_219
  doc = importlib.import_module(f"configs.ddpm.{name}").__doc__   # the file loaded above
  assert "113,673,219 parameters" in doc
  assert (cfg.model.ch, cfg.model.ch_mult, cfg.model.attn_resolutions, cfg.model.dropout,
          cfg.training.ema_decay, cfg.optim.lr, cfg.training.batch_size, cfg.data.image_size,
          cfg.sampling.var_type, cfg.diffusion.var_type) == \
      (128, (1, 1, 2, 2, 4, 4), (16,), 0.0, 0.9999, 2e-5, 64, 256, "fixedsmall", "fixedsmall")

"""diffusion/pretrained/ncsn_torch.py: the official NCSN / NCSNv2 checkpoints and their
config.yml read without torch (layouts, names, refusals, release settings), and imported
as a run whose ε is the official network's."""

import pickle

import numpy as np
import pytest

import diffusion
from diffusion.errors import ConfigError
from diffusion.models import refinenet
from diffusion.pretrained import ncsn_torch

from tests.models.test_refinenet import FIXTURES, rel_err, RTOL


# ---- layouts, names, refusals, config.yml ---------------------------------------------------


def test_select_weights_layouts():
  w = {"module.begin_conv.weight": np.zeros((2, 3, 3, 3), np.float32),
       "module.sigmas": np.array([2.0, 1.0], np.float32)}
  ema = {"begin_conv.weight": np.ones((2, 3, 3, 3), np.float32)}
  net, sig, info = ncsn_torch.select_weights([w, {}, 1, 2, ema])
  assert info["weights"] == "ema" and net["begin_conv.weight"][0, 0, 0, 0] == 1.0
  np.testing.assert_array_equal(sig, [2.0, 1.0])
  net, _, info = ncsn_torch.select_weights([w, {}, 1, 2, ema], raw=True)
  assert info["weights"] == "raw" and net["begin_conv.weight"][0, 0, 0, 0] == 0.0
  with pytest.raises(ncsn_torch.NCSNWeightsError, match="EMA state does not name"):
    ncsn_torch.select_weights([w, {}, 1, 2, {"other.weight": ema["begin_conv.weight"]}])
  with pytest.raises(ncsn_torch.NCSNWeightsError, match="not an NCSN/NCSNv2 checkpoint"):
    ncsn_torch.select_weights(["nope"])


def test_flax_path_names():
  path, arr = ncsn_torch.flax_path("refine2.adapt_convs.0.1_2_conv.weight",
                                   np.arange(2 * 3 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 3))
  assert path == ("refine2", "adapt_convs_0", "1_2_conv", "kernel") and arr.shape == (3, 3, 3, 2)
  assert ncsn_torch.flax_path("res2.0.conv2.conv.bias", np.zeros(4))[0] == (
      "res2_0", "conv2", "conv", "bias")
  assert ncsn_torch.flax_path("res1.1.normalize2.embed.weight", np.zeros((10, 12)))[0] == (
      "res1_1", "normalize2", "embed")


def test_refuses_foreign_and_mismatched_weights(released, tmp_path):
  obj = {"module.begin_conv.weight": np.zeros((4, 3, 3, 3), np.float32),
         "module.fc.weight": np.zeros((4, 4), np.float32)}
  with pytest.raises(ncsn_torch.NCSNWeightsError):
    ncsn_torch.infer_architecture(ncsn_torch.select_weights(obj)[0])
  # A network with one block missing: named in one line.
  from diffusion.io.torch_pickle import read_torch_checkpoint
  states = read_torch_checkpoint(released["ncsnv2"])
  weights, _, _ = ncsn_torch.select_weights(states)
  weights = {k: v for k, v in weights.items() if not k.startswith("refine4.crp")}
  params = ncsn_torch.to_flax_params(weights)
  with pytest.raises(ncsn_torch.NCSNWeightsError, match="missing") as err:
    ncsn_torch.check_params(params, refinenet.ncsnv2(4))
  assert "\n" not in str(err.value)
  # A pickle that would run code is refused before anything runs.
  class Evil:
    def __reduce__(self):
      return (print, ("ran",))
  bad = tmp_path / "evil.pth"
  bad.write_bytes(pickle.dumps([Evil()]))
  with pytest.raises(Exception, match="refusing to load the global builtins.print"):
    ncsn_torch.import_ncsn_checkpoint(str(bad))


def test_release_config(released):
  cfg = ncsn_torch.read_release_config(str(FIXTURES / "ncsnv2_config.yml"))
  assert cfg["model"]["ngf"] == 4 and cfg["data"]["dataset"] == "CIFAR10"
  settings = ncsn_torch.release_settings(cfg)
  assert settings["architecture"] == "ncsnv2" and settings["denoise"] is True
  assert (settings["n_steps_each"], settings["step_lr"]) == (5, 6.2e-6)
  _, sigmas, _ = ncsn_torch.import_ncsn_checkpoint(released["ncsnv2"])
  assert ncsn_torch.ladder_mismatch(sigmas, settings["sigmas"]) is None
  assert "noise levels" in ncsn_torch.ladder_mismatch(sigmas, settings["sigmas"][1:])
  assert "sigma[" in ncsn_torch.ladder_mismatch(sigmas, settings["sigmas"] * 1.01)


def test_release_config_never_runs_tags(tmp_path):
  marker = tmp_path / "ran"
  path = tmp_path / "config.yml"
  path.write_text(
      f"a: !!python/object/apply:os.system ['touch {marker}']\n"
      "b: !!python/object/new:builtins.list [[1, 2]]\n"
      "c: !!python/tuple [0.9, 0.999]\n"
      "model: !!python/object:argparse.Namespace {ngf: 8}\n")
  cfg = ncsn_torch.read_release_config(str(path))
  assert not marker.exists()
  assert cfg["a"] == [f"touch {marker}"] and cfg["c"] == [0.9, 0.999]
  assert cfg["model"] == {"ngf": 8}


def test_ncsn_v1_release_settings():
  cfg = {"data": {"dataset": "CIFAR10", "image_size": 32, "channels": 3},
         "model": {"sigma_begin": 1, "sigma_end": 0.01, "num_classes": 10, "ngf": 128},
         "optim": {"lr": 0.001}, "training": {"batch_size": 128, "n_iters": 200001}}
  s = ncsn_torch.release_settings(cfg)
  assert s["architecture"] == "ncsn" and s["step_lr"] is None
  np.testing.assert_allclose(s["sigmas"], np.geomspace(0.01, 1.0, 10), rtol=1e-12)


# ---- a release imported as a run ------------------------------------------------------------


def _tiny_v2_config():
  """configs/ncsn/ncsnv2_cifar10.py at the fixture's size (ngf 4, 16 px, 6 levels 0.01..5)."""
  from configs.ncsn import ncsnv2_cifar10  # pylint: disable=import-outside-toplevel
  config = ncsnv2_cifar10.get_config()
  config.model.ngf = 4
  config.data.image_size = 16
  config.diffusion.update(sigma_min=0.01, sigma_max=5.0, num_timesteps=6)
  return config


def test_import_writes_a_run_whose_eps_is_the_official_networks(released, tmp_path):
  """import_ncsn -> diffusion.load(DIR).eps(x, t) = −σ·s of the official NCSNv2 (EMA)."""
  from diffusion.pretrained import importer  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path / "run")
  r = importer.import_ncsn(released["ncsnv2"], workdir, config=_tiny_v2_config())
  assert r["weights"] == "ema" and r["step"] == 1234
  run = diffusion.load(workdir)
  ref = np.load(FIXTURES / "ncsnv2.npz")
  t = len(ref["sigmas"]) - 1 - ref["y"]
  want = -ref["sigmas"][ref["y"]][:, None, None, None] * ref["out"]
  assert run.step == 1234 and rel_err(run.eps(ref["x"], t), want) < RTOL


def test_import_refuses_a_config_of_another_ladder_or_network(released, tmp_path):
  from diffusion.pretrained import importer  # pylint: disable=import-outside-toplevel
  config = _tiny_v2_config()
  config.diffusion.sigma_max = 6.0
  with pytest.raises(ConfigError, match="sigma") as err:
    importer.import_ncsn(released["ncsnv2"], str(tmp_path / "a"), config=config)
  assert "\n" not in str(err.value) and not (tmp_path / "a").exists()
  config = _tiny_v2_config()
  config.model.ngf = 8
  with pytest.raises(ConfigError, match="model.ngf=8"):
    importer.import_ncsn(released["ncsnv2"], str(tmp_path / "b"), config=config)

"""The NCSN / NCSNv2 RefineNets and the importer of their releases, against the official code.

The fixtures (tests/fixtures/ncsn/, written once by tests/fixtures/make_ncsn_fixture.py
with the official model classes and torch) are tiny checkpoints in the released layout
with the official float64 outputs on fixed inputs; these tests read them without torch.
"""

import lzma
import pathlib
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffusion
from diffusion import make_eps_fn
from diffusion.core.processes import VEProcess
from diffusion.errors import ConfigError
from diffusion.models import refinenet as rn
from diffusion.models import refinenet_layers as rl
from diffusion.pretrained import ncsn_torch

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "ncsn"
RTOL = 1e-5


def rel_err(ours, ref) -> float:
  """max |ours − ref| / max |ref| (float64)."""
  ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
  return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


@pytest.fixture(scope="module")
def released(tmp_path_factory):
  """name -> path of the decompressed checkpoint (the bytes torch.save wrote)."""
  folder = tmp_path_factory.mktemp("ncsn_releases")
  out = {}
  for xz in sorted(FIXTURES.glob("*.pth.xz")):
    path = folder / xz.name[:-len(".xz")]
    path.write_bytes(lzma.decompress(xz.read_bytes()))
    out[xz.name[:-len(".pth.xz")]] = str(path)
  return out


def load(released, name, raw=False):
  params, sigmas, meta = ncsn_torch.import_ncsn_checkpoint(released[name], raw=raw)
  module = rn.make_refinenet(meta["architecture"], meta["ngf"], meta["channels"],
                             meta["num_classes"] or 1)
  return module, params, sigmas, meta


# ---------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("module, image_size, expected", [
    (rn.ncsn(64, 10, 1), 28, 7_638_657),        # NCSN MNIST (ncsn configs/anneal.yml)
    (rn.ncsn(128, 10, 3), 32, 30_117_635),      # NCSN CIFAR-10 / CelebA
    (rn.ncsnv2(128), 32, 29_694_083),           # NCSNv2 CIFAR-10 (L 232), CelebA (L 500)
    (rn.ncsnv2_deeper(128), 32, 83_445_379),    # NCSNv2Deeper: LSUN church, bedroom
    (rn.ncsnv2_deepest(128), 32, 94_132_611),   # NCSNv2Deepest: FFHQ
], ids=["ncsn_mnist", "ncsn_cifar10", "ncsnv2_cifar10", "ncsnv2_deeper", "ncsnv2_deepest"])
def test_parameter_counts_match_official_code(module, image_size, expected):
  assert rn.param_count(module, image_size) == expected


def test_ncsnv2_count_does_not_depend_on_levels():
  # Unconditional: CIFAR-10's 232 levels and CelebA's 500 give the same network.
  assert rn.make_refinenet("ncsnv2", num_classes=232) == rn.make_refinenet(
      "ncsnv2", num_classes=500)


def test_shapes_and_divisibility():
  net = rn.ncsnv2_deeper(4)
  x = jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32)
  cond = jax.ShapeDtypeStruct((2,), jnp.float32)
  params = jax.eval_shape(net.init, jax.random.PRNGKey(0), x, cond)
  out = jax.eval_shape(net.apply, params, x, cond)
  assert out.shape == (2, 16, 16, 3) and out.dtype == jnp.float32
  with pytest.raises(ValueError, match="divisible by 4"):
    jax.eval_shape(net.apply, params, jax.ShapeDtypeStruct((1, 18, 18, 3), jnp.float32),
                   jax.ShapeDtypeStruct((1,), jnp.float32))


# ---------------------------------------------------------------------------
# Layers against independent formulas
# ---------------------------------------------------------------------------

def test_resize_align_corners_matches_formula():
  x = np.random.default_rng(0).normal(size=(1, 3, 4, 2)).astype(np.float32)
  out = np.asarray(rl.resize_bilinear_align_corners(jnp.asarray(x), (5, 7)))
  # Reference: separable linear interpolation at i*(n_in-1)/(n_out-1), corners aligned.
  def interp_axis(a, axis, n_out):
    n_in = a.shape[axis]
    pos = np.arange(n_out) * (n_in - 1) / (n_out - 1)
    return np.stack([np.apply_along_axis(lambda v: np.interp(p, np.arange(n_in), v), axis, a)
                     for p in pos], axis=axis)
  ref = interp_axis(interp_axis(x.astype(np.float64), 1, 5), 2, 7)
  np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(out[:, [0, -1]][:, :, [0, -1]], x[:, [0, -1]][:, :, [0, -1]])
  # jax.image.resize samples half-pixel centres: a different operation.
  assert not np.allclose(np.asarray(jax.image.resize(x, (1, 5, 7, 2), "bilinear")), ref,
                         atol=1e-3)


def test_instance_norm_plus_uses_unbiased_channel_variance():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 5, 5, 3)), jnp.float32)
  normed, means = rl._instance_norm_plus_core(x)  # pylint: disable=protected-access
  mu = np.asarray(x, np.float64).mean(axis=(1, 2))
  ref = (mu - mu.mean(-1, keepdims=True)) / np.sqrt(mu.var(-1, ddof=1, keepdims=True) + 1e-5)
  np.testing.assert_allclose(np.asarray(means)[:, 0, 0], ref, rtol=1e-5)
  xv = np.asarray(x, np.float64)
  ref_in = (xv - xv.mean((1, 2), keepdims=True)) / np.sqrt(xv.var((1, 2), keepdims=True) + 1e-5)
  np.testing.assert_allclose(np.asarray(normed), ref_in, rtol=1e-5, atol=1e-6)


def test_pooling_conventions():
  x = jnp.ones((1, 5, 5, 1))
  avg = np.asarray(rl.pool_5x5(x, "avg"))[0, :, :, 0]
  assert avg[2, 2] == pytest.approx(1.0) and avg[0, 0] == pytest.approx(9 / 25)  # pad counted
  mx = np.asarray(rl.pool_5x5(-x, "max"))[0, :, :, 0]
  np.testing.assert_array_equal(mx, -1.0)                                # pad never wins


@pytest.mark.parametrize("num_classes", [0, 3])
def test_refine_block_is_differentiable(num_classes):
  """Training needs reverse-mode through pooling, fusion and the norms (a small block
  stands for the network: same layers, a fraction of the compile time)."""
  block = rl.RefineBlock(4, num_classes=num_classes)
  xs = [jnp.ones((1, 4, 4, 4)) * jnp.arange(4.0), jnp.ones((1, 2, 2, 4)) * jnp.arange(4.0)[::-1]]
  y = jnp.array([1])
  params = block.init(jax.random.PRNGKey(0), xs, y)
  grads = jax.grad(lambda p, xs: jnp.sum(block.apply(p, xs, y) ** 2), argnums=(0, 1))(params, xs)
  leaves = jax.tree_util.tree_leaves(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  assert all(bool(jnp.any(g != 0)) for g in jax.tree_util.tree_leaves(grads[1]))


# ---------------------------------------------------------------------------
# Agreement with the official networks through the importer
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, size", [("ncsn_cifar", 16), ("ncsn_cifar", 12),
                                        ("ncsn_mnist", 28)])
def test_ncsn_matches_official(released, name, size):
  module, params, sigmas, meta = load(released, name)
  assert sigmas is None and meta["architecture"] == "ncsn" and meta["weights"] == "raw"
  assert not meta["has_ema"] and meta["epoch"] is None
  ref = np.load(FIXTURES / f"{name}.npz")
  x, y, want = ref[f"x_{size}"], ref[f"y_{size}"], ref[f"out_{size}"]
  L = meta["num_classes"]
  t = (L - 1 - y).astype(np.float32)     # official index 0 = largest σ = our t = L − 1
  apply = jax.jit(module.apply)
  out = apply({"params": params}, 2.0 * jnp.asarray(x) - 1.0, jnp.asarray(t))
  assert rel_err(out, want) < RTOL
  # The level index matters: the reversed order gives another answer.
  wrong = apply({"params": params}, 2.0 * jnp.asarray(x) - 1.0, jnp.asarray(y, jnp.float32))
  assert rel_err(wrong, want) > 1e-2
  # A level outside the table is NaN, never a silently clamped level.
  outside = apply({"params": params}, 2.0 * jnp.asarray(x) - 1.0, jnp.asarray([L, -1.0]))
  assert np.all(np.isnan(outside))


@pytest.mark.parametrize("name, architecture", [("ncsnv2", "ncsnv2"),
                                                ("ncsnv2_deeper", "ncsnv2_deeper"),
                                                ("ncsnv2_deepest", "ncsnv2_deepest")])
def test_ncsnv2_matches_official(released, name, architecture):
  ref = np.load(FIXTURES / f"{name}.npz")
  x, y = ref["x"], ref["y"]
  apply = None
  for raw, key in ((False, "out"), (True, "out_raw")):
    module, params, sigmas, meta = load(released, name, raw=raw)
    apply = apply or jax.jit(module.apply)   # same network both times: one compilation
    assert meta["architecture"] == architecture
    assert meta["weights"] == ("raw" if raw else "ema") and meta["has_ema"]
    assert (meta["epoch"], meta["step"]) == (7, 1234)
    np.testing.assert_array_equal(sigmas, ref["sigmas"][::-1])     # stored ladder, ascending
    assert meta["num_classes"] == len(sigmas)
    h = apply({"params": params}, 2.0 * jnp.asarray(x) - 1.0, jnp.zeros(len(x)))
    # The official forward returns h / σ_y with its float32 buffer.
    s = np.asarray(h, np.float64) / ref["sigmas"][y][:, None, None, None]
    assert rel_err(s, ref[key]) < RTOL, key
  assert rel_err(ref["out"], ref["out_raw"]) > 1e-3    # the EMA really differs


def test_eps_through_the_glue(released):
  """diffusion's eps_fn(x_t, t) is −σ_t · s of the official network at the same level,
  with the glue's 2x − 1 (model.rescale_inputs) applied once."""
  # NCSN: raw score output; any ascending ladder with the checkpoint's L levels.
  module, params, _, meta = load(released, "ncsn_cifar")
  ref = np.load(FIXTURES / "ncsn_cifar.npz")
  x, y, s = ref["x_16"], ref["y_16"], ref["out_16"]
  L = meta["num_classes"]
  ladder = np.geomspace(0.01, 1.0, L)
  eps_fn = make_eps_fn(module, params, VEProcess.from_sigmas(ladder),
                       {"rescale_inputs": True})
  t = L - 1 - y
  want = -ladder[t][:, None, None, None] * s
  assert rel_err(jax.jit(eps_fn)(jnp.asarray(x), jnp.asarray(t, jnp.int32)), want) < RTOL
  with pytest.raises(ConfigError, match="outputs the score itself"):
    make_eps_fn(module, params, VEProcess.from_sigmas(ladder),
                {"rescale_inputs": True, "scale_by_sigma": True})

  # NCSNv2: output h, read with scale_by_sigma; the ladder comes from the checkpoint.
  module, params, sigmas, _ = load(released, "ncsnv2")
  ref = np.load(FIXTURES / "ncsnv2.npz")
  x, y, s = ref["x"], ref["y"], ref["out"]
  eps_fn = make_eps_fn(module, params, VEProcess.from_sigmas(sigmas),
                       {"rescale_inputs": True, "scale_by_sigma": True})
  t = len(sigmas) - 1 - y
  want = -ref["sigmas"][y][:, None, None, None] * s
  assert rel_err(jax.jit(eps_fn)(jnp.asarray(x), jnp.asarray(t, jnp.int32)), want) < RTOL


# ---------------------------------------------------------------------------
# The importer: layout, refusals, config.yml
# ---------------------------------------------------------------------------

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
    ncsn_torch.check_params(params, rn.ncsnv2(4))
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


# ---------------------------------------------------------------------------
# The importer as a user runs it: python -m diffusion.pretrained import checkpoint.pth
# ---------------------------------------------------------------------------

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


def test_cli_reads_the_release_config_yml_beside_the_checkpoint(released, tmp_path):
  """No --config: the release's config.yml (python tags read as data) names the config;
  here it is CIFAR-10 NCSNv2 at full size, whose ladder and width differ: one line, exit 2."""
  import shutil, subprocess, sys  # pylint: disable=import-outside-toplevel,multiple-imports
  folder = tmp_path / "release"
  folder.mkdir()
  shutil.copy(released["ncsnv2"], folder / "checkpoint.pth")
  shutil.copy(FIXTURES / "ncsnv2_config.yml", folder / "config.yml")
  res = subprocess.run([sys.executable, "-m", "diffusion.pretrained", "import",
                        str(folder / "checkpoint.pth"), f"--workdir={tmp_path / 'w'}"],
                       capture_output=True, text=True, timeout=300,
                       cwd=str(pathlib.Path(__file__).resolve().parents[1]))
  assert res.returncode == 2, res.stderr
  lines = [line for line in res.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("error:") and "model.ngf" in lines[0]
  assert not (tmp_path / "w").exists()

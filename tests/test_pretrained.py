"""The papers' own weights: import from diffusers / DDPM's TensorFlow checkpoints, export.

The reference numbers come from diffusers itself (``tests/fixtures/make_diffusers_fixture.py``,
run once with torch + diffusers; the tests import neither): a tiny DDPM-family
UNet2DModel in both file formats and both attention-name generations, its ε on fixed
inputs, a 10-step DDIMScheduler chain, and the names and shapes of the published
CIFAR-10 and 256 px configurations. The TensorFlow checkpoint is written by
TensorFlow in a subprocess (``tests/fixtures/make_ddpm_tf_fixture.py``).
"""

import collections
import io
import glob
import json
import os
import pickle
import shutil
import subprocess
import sys
import types
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffusion
import safetensors.numpy

from configs.ddpm import cifar10
from diffusion import families, samplers
from diffusion.config import checks as config_check
from diffusion.io import torch_pickle
from diffusion.io import workdir as runs
from diffusion.pretrained import ddpm_tf, diffusers, export_run, import_weights, importer
from diffusion.pretrained.network import WeightsError, flatten

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "fixtures")
DIFFUSERS = os.path.join(FIXTURES, "diffusers")
TINY = os.path.join(DIFFUSERS, "tiny")                  # safetensors, to_q names, float16
TINY_OLD_BIN = os.path.join(DIFFUSERS, "tiny_old_bin")  # torch pickle, query names, float16
REF = np.load(os.path.join(DIFFUSERS, "reference.npz"))
RELEASES = json.load(open(os.path.join(DIFFUSERS, "releases.json")))


def tiny_config():
  """The CIFAR-10 config at the fixture's 16 px (the network comes from the weights)."""
  config = cifar10.get_config()
  config.data.image_size = 16
  return config


def load_run(workdir):
  """What ``diffusion.load(DIR)`` does: the config.json, the family, the EMA params."""
  cfg = config_check.validate(runs.load_config(workdir))
  family = families.make_family(cfg)
  params, step = runs.restore_ema_params(workdir, family)
  return cfg, family, params, step


def params_of(workdir):
  return {k: np.asarray(v) for k, v in flatten(dict(load_run(workdir)[2])).items()}


def one_line(e) -> str:
  text = str(e.value if hasattr(e, "value") else e)
  assert "\n" not in text, text
  return text


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("pretrained") / "tiny_run")
  result = import_weights(TINY, workdir, config=tiny_config())
  return workdir, result


# ---- names, shapes and counts of the published configurations --------------------


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_mapping_names_every_tensor_of_the_published_configs(release):
  """Our parameters map one-to-one onto diffusers' state dict of google/ddpm-cifar10-32
  and the 256 px releases: the same names, the same shapes, the same count."""
  r = RELEASES[release]
  spec = diffusers.spec_from_config(r["config"], release)
  config = cifar10.get_config() if spec.image_size == 32 else \
      importer.load_config_module("configs.ddpm.church_256")
  cfg = importer.release_config(config, spec, release)
  shapes = importer._shapes(cfg)  # pylint: disable=protected-access
  ours = {}
  for path, shape in shapes.items():
    name = diffusers.diffusers_name(path, spec.num_levels)
    ours[name] = list(diffusers.torch_shape(shape, name))
  assert ours == r["shapes"]
  assert sum(int(np.prod(s)) for s in shapes.values()) == r["num_params"] == \
      {"cifar10_32": 35_746_307, "lsun_256": 113_673_219}[release]
  # The release's architecture is exactly the dataset config's.
  base = config_check.validate(config)
  assert (cfg.model.ch, cfg.model.ch_mult, cfg.model.num_res_blocks,
          cfg.model.attn_resolutions) == (base.model.ch, base.model.ch_mult,
                                          base.model.num_res_blocks, base.model.attn_resolutions)
  # And it goes back to the same config.json (the fields diffusers reads).
  again = diffusers.config_from_spec(diffusers.spec_from_config(r["config"], release))
  assert {k: v for k, v in again.items() if not k.startswith("_") and k != "dropout"} == \
      {k: (list(v) if isinstance(v, tuple) else v) for k, v in r["config"].items()
       if k != "dropout"}


@pytest.mark.parametrize("name", ["celebahq_256", "church_256", "bedroom_256", "cat_256"])
def test_256px_configs_build_the_released_114m_unet(name):
  config = importer.load_config_module(f"configs.ddpm.{name}")
  cfg = config_check.validate(config)
  abstract = families.make_family(cfg).abstract_params()   # jax.eval_shape: no allocation
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract)) == 113_673_219
  doc = sys.modules[f"configs.ddpm.{name}"].__doc__
  assert "113,673,219 parameters" in doc
  assert (cfg.model.ch, cfg.model.ch_mult, cfg.model.attn_resolutions, cfg.model.dropout,
          cfg.training.ema_decay, cfg.optim.lr, cfg.training.batch_size, cfg.data.image_size,
          cfg.sampling.var_type, cfg.diffusion.var_type) == \
      (128, (1, 1, 2, 2, 4, 4), (16,), 0.0, 0.9999, 2e-5, 64, 256, "fixedsmall", "fixedsmall")


def test_release_is_told_from_its_folder_name():
  cases = {"weights/google/ddpm-cifar10-32": "configs.ddpm.cifar10",
           "ddpm-ema-church-256": "configs.ddpm.church_256",
           "google/ddpm-bedroom-256/unet": "configs.ddpm.bedroom_256",
           "ddpm-ema-cat-256": "configs.ddpm.cat_256",
           "diffusion_celeba_hq_model/model.ckpt-560000": "configs.ddpm.celebahq_256",
           "ddpm-celebahq-256": "configs.ddpm.celebahq_256",
           "diffusion_lsun_church_model": "configs.ddpm.church_256",
           "my_weights": None}
  for src, want in cases.items():
    assert importer.release_config_name(src) == want, src


# ---- import from diffusers: ε, the DDIM chain, both formats, both name generations -----


def test_import_writes_an_ordinary_run(imported):
  workdir, result = imported
  assert sorted(os.listdir(workdir)) == ["checkpoints", "config.json", "pretrained.json"]
  cfg, family, params, step = load_run(workdir)
  assert step == 0 and result["step"] == 0
  assert (cfg.model.ch, cfg.model.ch_mult, cfg.model.num_res_blocks,
          cfg.model.attn_resolutions, cfg.model.dropout) == (32, (1, 1), 1, (8,), 0.0)
  assert cfg.sampling.var_type == "fixedlarge"   # CIFAR-10's sampler (DDPM)
  record = json.load(open(os.path.join(workdir, "pretrained.json")))
  assert record["format"] == "diffusers safetensors, attention names to_q"
  assert record["num_params"] == 285_667 and len(record["sha256"]) == 64
  # The checkpoint is train.py's: a TrainState with params == EMA params and Adam's state.
  from diffusion.io.checkpoints import Checkpointer  # pylint: disable=import-outside-toplevel
  from diffusion.train import loop, optim  # pylint: disable=import-outside-toplevel
  target = loop.initial_state(family, optim.make_optimizer(cfg.optim))
  ckpt = Checkpointer(workdir, read_only=True)
  try:
    state = ckpt.restore(0, target)
  finally:
    ckpt.close()
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(state.ema_params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_imported_eps_equals_diffusers(imported):
  _, family, params, _ = load_run(imported[0])
  eps = np.asarray(family.eps_fn(params)(jnp.asarray(REF["x"]), jnp.asarray(REF["t"])))
  np.testing.assert_allclose(eps, REF["eps"], rtol=1e-5, atol=1e-5)
  assert np.abs(eps - REF["eps"]).max() < 1e-5    # measured 2.1e-6 (|ε| up to 2.7)


def test_public_load_eps_equals_diffusers(imported):
  """The outside check's path: diffusion.load(DIR).eps(x_t, t) against diffusers' ε."""
  run = diffusion.load(imported[0])
  eps = np.asarray(run.eps(REF["x"], REF["t"]))
  assert np.abs(eps - REF["eps"]).max() < 1e-5


def test_ddim_chain_with_our_eps_equals_diffusers_ddim_scheduler(imported):
  """DDIMScheduler (η = 0, no clipping, t = 900, 800, ..., 0, ᾱ_prev = 1 at the end) is
  our DDIM with uniform τ, clip_x0 False; every state of the chain agrees."""
  cfg, family, params, _ = load_run(imported[0])
  np.testing.assert_allclose(np.asarray(family.process.alphas_cumprod), REF["alphas_cumprod"],
                             rtol=2e-6)
  settings = cfg.sampling.replace(method="ddim", num_steps=10, eta=0.0, clip_x0=False,
                                  skip_type="uniform")
  plan = samplers.make_plan(family.process, settings)
  np.testing.assert_array_equal(np.asarray(plan.rows["model_t"]), REF["ddim_t"])
  x_T = jnp.asarray(REF["ddim_x"][0])
  _, traj = samplers.run_plan(plan, family.eps_fn(params), x_T.shape, jax.random.PRNGKey(0),
                              init=x_T, x0_range=None, trajectory_every=1)
  np.testing.assert_allclose(np.asarray(traj), REF["ddim_x"], rtol=1e-4, atol=1e-4)


def _renamed(state, rename):
  return {rename(k) or k: v for k, v in state.items()}


def test_both_formats_and_both_name_generations_give_the_same_network(imported, tmp_path):
  st = diffusers.read_state_dict(os.path.join(TINY, diffusers.SAFETENSORS_NAME))
  old = diffusers.read_state_dict(os.path.join(TINY_OLD_BIN, diffusers.PICKLE_NAME))
  assert any(".query." in k for k in old) and not any(".to_q." in k for k in old)
  assert any(".to_q." in k for k in st)
  # The old-name safetensors and a 1x1-conv attention variant, made here from the fixture.
  old_st = tmp_path / "old_st"
  old_st.mkdir()
  shutil.copy(os.path.join(TINY, "config.json"), old_st)
  safetensors.numpy.save_file(_renamed(st, diffusers.old_attention_name),
                              str(old_st / diffusers.SAFETENSORS_NAME))
  conv_attn = {k: (v[:, :, None, None] if ".query." in k and v.ndim == 2 else v)
               for k, v in old.items()}
  shapes = importer._shapes(config_check.validate(load_run(imported[0])[0]))  # pylint: disable=protected-access
  want = params_of(imported[0])
  for name, state in (("safetensors, to_q", st), ("pickle, query", old),
                      ("safetensors, query",
                       diffusers.read_state_dict(str(old_st / diffusers.SAFETENSORS_NAME))),
                      ("pickle, query as 1x1 convs", conv_attn)):
    got, naming = diffusers.to_params(state, shapes, 2, name)
    assert naming == ("to_q" if "to_q" in name else "query"), name
    assert set(got) == set(want)
    for k in want:
      np.testing.assert_array_equal(got[k], want[k], err_msg=f"{name}: {k}")
  # The .bin end to end (the restricted unpickler, the old names).
  workdir = str(tmp_path / "from_bin")
  r = import_weights(TINY_OLD_BIN, workdir, config=tiny_config())
  assert r["format"] == "diffusers torch pickle, attention names query"
  got = params_of(workdir)
  assert all(np.array_equal(got[k], want[k]) for k in want)


# ---- export ---------------------------------------------------------------------------


def test_export_reproduces_diffusers_file_and_imports_bit_exact(imported, tmp_path):
  workdir, _ = imported
  out = str(tmp_path / "exported")
  r = export_run(workdir, out)
  assert r["step"] == 0 and sorted(os.listdir(out)) == sorted(
      ["config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json"])
  exported = diffusers.read_state_dict(os.path.join(out, diffusers.SAFETENSORS_NAME))
  original = diffusers.read_state_dict(os.path.join(TINY, diffusers.SAFETENSORS_NAME))
  # The very tensors diffusers saved (float16-exact weights, now float32), same names.
  assert set(exported) == set(original)
  for k, v in original.items():
    assert exported[k].dtype == np.float32
    np.testing.assert_array_equal(exported[k], v.astype(np.float32), err_msg=k)
  theirs = json.load(open(os.path.join(TINY, "config.json")))
  ours = json.load(open(os.path.join(out, "config.json")))
  assert {k: v for k, v in ours.items() if not k.startswith("_")} == \
      {k: v for k, v in theirs.items() if not k.startswith("_")}
  sched = json.load(open(os.path.join(out, "scheduler_config.json")))
  assert (sched["beta_schedule"], sched["beta_start"], sched["beta_end"],
          sched["num_train_timesteps"], sched["variance_type"]) == \
      ("linear", 1e-4, 0.02, 1000, "fixed_large")
  again = str(tmp_path / "reimported")
  import_weights(out, again, config=tiny_config())
  before, after = params_of(workdir), params_of(again)
  assert set(before) == set(after)
  for k in before:
    assert before[k].tobytes() == after[k].tobytes(), k


def test_export_refuses_a_network_without_a_diffusers_counterpart(tmp_path):
  cfg = config_check.validate(tiny_config())
  cfg = cfg.replace(model=cfg.model.replace(ch=32, ch_mult=(1, 1), num_res_blocks=1,
                                            attn_resolutions=(8,), resamp_with_conv=False))
  workdir = str(tmp_path / "avgpool")
  params = families.make_family(cfg).init_params(jax.random.PRNGKey(0))
  importer.write_run(cfg, params, workdir, 0, {})
  with pytest.raises(WeightsError, match="model.resamp_with_conv=False") as e:
    export_run(workdir, str(tmp_path / "out"))
  one_line(e)
  assert not os.path.exists(tmp_path / "out")


# ---- malformed inputs: one line naming the file and the field or tensor ------------------


def _copy_fixture(tmp_path, folder=TINY):
  src = tmp_path / "src"
  shutil.copytree(folder, src)
  return src


def _edit_config(src, **changes):
  path = src / "config.json"
  cfg = json.load(open(path))
  for k, v in changes.items():
    if v is _DELETE:
      del cfg[k]
    else:
      cfg[k] = v
  json.dump(cfg, open(path, "w"))


_DELETE = object()
CONFIG_CASES = [
    ("downsample_padding", 1, 'downsample_padding=1'),
    ("freq_shift", 0, "freq_shift=0"),
    ("flip_sin_to_cos", True, "flip_sin_to_cos=true"),
    ("norm_eps", 1e-5, "norm_eps=1e-05"),
    ("norm_num_groups", 16, "norm_num_groups=16"),
    ("act_fn", "gelu", 'act_fn="gelu"'),
    ("time_embedding_type", "fourier", 'time_embedding_type="fourier"'),
    ("resnet_time_scale_shift", "scale_shift", 'resnet_time_scale_shift="scale_shift"'),
    ("attention_head_dim", 8, "attention_head_dim=8"),
    ("attention_head_dim", _DELETE, "attention_head_dim (absent: diffusers' default)=8"),
    ("freq_shift", _DELETE, "freq_shift (absent: diffusers' default)=0"),
    ("center_input_sample", True, "center_input_sample=true"),
    ("mid_block_scale_factor", 1.4142, "mid_block_scale_factor=1.4142"),
    ("down_block_types", ["DownBlock2D", "CrossAttnDownBlock2D"], "down_block_types="),
    ("up_block_types", ["UpBlock2D", "UpBlock2D"], "up_block_types="),
    ("block_out_channels", [32, 48], "block_out_channels=[32, 48]"),
    ("sample_size", 15, "sample_size=15"),
    ("class_embed_type", "timestep", 'class_embed_type="timestep"'),
    ("cross_attention_dim", 768, "cross_attention_dim=768"),
    ("_class_name", "UNet2DConditionModel", '_class_name="UNet2DConditionModel"'),
]


@pytest.mark.parametrize("field,value,message", CONFIG_CASES,
                         ids=[f"{c[0]}={'absent' if c[1] is _DELETE else c[1]}"
                              for c in CONFIG_CASES])
def test_config_of_another_network_is_refused(tmp_path, field, value, message):
  src = _copy_fixture(tmp_path)
  _edit_config(src, **{field: value})
  workdir = tmp_path / "run"
  with pytest.raises(WeightsError) as e:
    import_weights(str(src), str(workdir), config=tiny_config())
  text = one_line(e)
  assert str(src / "config.json") in text and message in text, text
  assert not workdir.exists() and os.listdir(tmp_path) == ["src"]


def _edit_weights(src, edit):
  path = str(src / diffusers.SAFETENSORS_NAME)
  state = dict(safetensors.numpy.load_file(path))
  edit(state)
  safetensors.numpy.save_file(state, path)
  return path


def test_weights_that_do_not_fit_are_refused_naming_the_tensor(tmp_path):
  cases = [
      ("missing", lambda s: s.pop("up_blocks.0.attentions.1.to_v.bias"),
       "tensor up_blocks.0.attentions.1.to_v.bias is missing"),
      ("unknown", lambda s: s.update({"mid_block.extra.weight": np.zeros(3, np.float16)}),
       "tensor mid_block.extra.weight is not part of the network"),
      ("shape", lambda s: s.update({"conv_in.weight": np.zeros((32, 3, 5, 5), np.float16)}),
       "tensor conv_in.weight has shape (32, 3, 5, 5)"),
      ("nan", lambda s: s.update({"conv_out.bias": np.array([np.nan, 0, 0], np.float16)}),
       "tensor conv_out.bias holds NaN"),
      ("int", lambda s: s.update({"conv_out.bias": np.zeros(3, np.int32)}),
       "tensor conv_out.bias holds int32"),
  ]
  for name, edit, message in cases:
    case = tmp_path / name
    case.mkdir()
    src = _copy_fixture(case)
    path = _edit_weights(src, edit)
    with pytest.raises(WeightsError) as e:
      import_weights(str(src), str(case / "run"), config=tiny_config())
    text = one_line(e)
    assert text.startswith(path) and message in text, text
    assert sorted(os.listdir(case)) == ["src"], name


def test_truncated_or_corrupt_files_are_one_line(tmp_path):
  src = _copy_fixture(tmp_path)
  st = src / diffusers.SAFETENSORS_NAME
  data = st.read_bytes()
  st.write_bytes(data[:len(data) - 1000])
  with pytest.raises(WeightsError) as e:
    import_weights(str(src), str(tmp_path / "run"), config=tiny_config())
  text = one_line(e)
  assert text.startswith(str(st)) and "truncated: tensor " in text, text
  st.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + data[100:200])
  with pytest.raises(WeightsError) as e:
    import_weights(str(src), str(tmp_path / "run"), config=tiny_config())
  assert one_line(e).startswith(str(st)) and "not a readable safetensors file" in str(e.value)

  (tmp_path / "bin").mkdir()
  old = _copy_fixture(tmp_path / "bin", TINY_OLD_BIN)
  pkl = old / diffusers.PICKLE_NAME
  raw = pkl.read_bytes()
  pkl.write_bytes(raw[:len(raw) // 2])                   # the zip directory is gone
  with pytest.raises(WeightsError) as e:
    import_weights(str(old), str(tmp_path / "run"), config=tiny_config())
  assert one_line(e).startswith(str(pkl)) and "truncated or corrupt" in str(e.value)
  # One flipped byte inside a tensor's bytes: the zip's CRC-32 names the tensor.
  with zipfile.ZipFile(io.BytesIO(raw)) as zf:
    info = next(i for i in zf.infolist() if i.filename.endswith("/data/5"))
  local = raw[info.header_offset:info.header_offset + 30]          # the local file header
  start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + \
      int.from_bytes(local[28:30], "little")
  flipped = bytearray(raw)
  flipped[start + 3] ^= 0xFF
  pkl.write_bytes(bytes(flipped))
  with pytest.raises(WeightsError) as e:
    import_weights(str(old), str(tmp_path / "run"), config=tiny_config())
  text = one_line(e)
  assert text.startswith(str(pkl)) and "tensor " in text and "CRC" in text, text
  assert not (tmp_path / "run").exists()


def test_a_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
  def fail(*args, **kwargs):
    raise RuntimeError("disk on fire")
  monkeypatch.setattr(importer.json, "dump", fail)   # the last file written
  with pytest.raises(RuntimeError, match="disk on fire"):
    import_weights(TINY, str(tmp_path / "run"), config=tiny_config())
  assert os.listdir(tmp_path) == []


def test_workdir_must_be_new_and_config_must_fit(tmp_path, imported):
  with pytest.raises(WeightsError, match="already holds files") as e:
    import_weights(TINY, imported[0], config=tiny_config())
  one_line(e)
  with pytest.raises(WeightsError, match=r"is a 16 px network, but the config is for "
                     r"data.image_size=32") as e:
    import_weights(TINY, str(tmp_path / "run"), config=cifar10.get_config())
  one_line(e)
  with pytest.raises(WeightsError, match="cannot tell which dataset") as e:
    import_weights(TINY, str(tmp_path / "run"))          # 16 px, no name to go by
  one_line(e)
  assert os.listdir(tmp_path) == []


def test_scheduler_of_another_schedule_is_refused(tmp_path):
  src = _copy_fixture(tmp_path)
  sched = {"_class_name": "DDPMScheduler", "beta_schedule": "linear", "beta_start": 0.0001,
           "beta_end": 0.012, "num_train_timesteps": 1000, "variance_type": "fixed_small"}
  json.dump(sched, open(src / "scheduler_config.json", "w"))
  with pytest.raises(WeightsError, match=r"beta_end=0.012 does not match") as e:
    import_weights(str(src), str(tmp_path / "run"), config=tiny_config())
  one_line(e)
  sched["beta_end"] = 0.02
  json.dump(sched, open(src / "scheduler_config.json", "w"))
  r = import_weights(str(src), str(tmp_path / "run"), config=tiny_config())
  assert any("variance_type='fixed_small'" in n for n in r["notes"])


# ---- a weights file is untrusted: the restricted unpickler --------------------------------


class _RunsACommand:
  def __init__(self, command):
    self.command = command

  def __reduce__(self):
    return (os.system, (self.command,))


def test_a_pickle_that_would_run_a_command_is_refused_and_never_runs_it(tmp_path):
  marker = tmp_path / "it_ran"
  payload = pickle.dumps(collections.OrderedDict(
      [("conv_in.weight", _RunsACommand(f"touch {marker}"))]), protocol=2)
  zipped = tmp_path / "zip" / diffusers.PICKLE_NAME
  zipped.parent.mkdir()
  with zipfile.ZipFile(zipped, "w") as zf:
    zf.writestr("archive/data.pkl", payload)
  legacy = tmp_path / "legacy.bin"
  legacy.write_bytes(payload)
  for path in (zipped, legacy):
    with pytest.raises(torch_pickle.RefusedGlobal) as e:
      torch_pickle.read_torch_checkpoint(str(path))
    text = one_line(e)
    assert text.startswith(str(path)) and f"the global {os.system.__module__}.system" in text
  # Through the importer, as a diffusers folder: the same one line.
  shutil.copy(os.path.join(TINY, "config.json"), zipped.parent)
  with pytest.raises(WeightsError, match="refusing to load the global") as e:
    import_weights(str(zipped.parent), str(tmp_path / "run"), config=tiny_config())
  one_line(e)
  assert not marker.exists() and not (tmp_path / "run").exists()
  os.system(f"touch {marker}")   # the check can see the file when the command runs
  assert marker.exists()


class _View:
  """Pickles as torch's _rebuild_tensor_v2(storage, offset, size, stride, ...)."""

  def __init__(self, rebuild, storage, size, stride):
    self.rebuild, self.storage, self.size, self.stride = rebuild, storage, size, stride

  def __reduce__(self):
    return (self.rebuild, (self.storage, 0, self.size, self.stride, False,
                           collections.OrderedDict()))


def test_a_tensor_view_outside_its_storage_is_refused(tmp_path, monkeypatch):
  """A crafted size/stride would make numpy read memory past the storage's bytes."""
  torch = types.ModuleType("torch")
  utils = types.ModuleType("torch._utils")

  def _rebuild_tensor_v2(*args):   # never called: only its name is pickled
    raise AssertionError

  _rebuild_tensor_v2.__module__ = "torch._utils"
  _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
  utils._rebuild_tensor_v2 = _rebuild_tensor_v2
  float_storage = type("FloatStorage", (), {"__module__": "torch", "__qualname__": "FloatStorage"})
  torch.FloatStorage, torch._utils = float_storage, utils
  monkeypatch.setitem(sys.modules, "torch", torch)
  monkeypatch.setitem(sys.modules, "torch._utils", utils)
  storage = object()
  buf = io.BytesIO()
  p = pickle.Pickler(buf, protocol=2)
  p.persistent_id = lambda o: ("storage", float_storage, "0", "cpu", 16) if o is storage \
      else None
  p.dump(collections.OrderedDict([("ok", _View(_rebuild_tensor_v2, storage, (4, 4), (4, 1))),
                                  ("w", _View(_rebuild_tensor_v2, storage, (4, 4), (4, 1000)))]))
  path = tmp_path / "view.bin"
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("archive/data.pkl", buf.getvalue())
    zf.writestr("archive/data/0", np.arange(16, dtype=np.float32).tobytes())
  with pytest.raises(ValueError, match=r"tensor w: a tensor view .* reaches element 3012 "
                     r"of a storage of 16") as e:
    torch_pickle.read_torch_checkpoint(str(path))
  one_line(e)


# ---- DDPM's TensorFlow checkpoints ---------------------------------------------------------


@pytest.fixture(scope="module")
def tf_checkpoint(tmp_path_factory):
  """A checkpoint written by TensorFlow (in a subprocess) under DDPM's variable names."""
  out = tmp_path_factory.mktemp("ddpm_tf") / "diffusion_tiny_model"
  res = subprocess.run([sys.executable, os.path.join(FIXTURES, "make_ddpm_tf_fixture.py"),
                        str(out), "--step=1234"], capture_output=True, text=True, timeout=600)
  if res.returncode != 0 and "No module named 'tensorflow'" in res.stderr:
    pytest.skip("TensorFlow is not installed (it writes the checkpoint)")
  assert res.returncode == 0, res.stderr[-3000:]
  return out


def test_tf_checkpoint_reader_reads_what_tensorflow_wrote(tf_checkpoint):
  reader = ddpm_tf.CheckpointReader(ddpm_tf.find_prefix(str(tf_checkpoint)))
  assert reader.global_step() == 1234
  names = set(reader.entries)
  assert {"model/conv_in/W", "model/conv_in/W/ExponentialMovingAverage", "model/conv_in/W/Adam",
          "model/down_1/attn_0/q/W", "model/mid/block_1/norm1/gamma",
          "model/up_1/upsample/conv/b", "beta1_power", "global_step"} <= names
  st = diffusers.read_state_dict(os.path.join(TINY, diffusers.SAFETENSORS_NAME))
  w = st["conv_in.weight"].astype(np.float32).transpose(2, 3, 1, 0)      # [3, 3, C_in, C_out]
  np.testing.assert_array_equal(reader.read("model/conv_in/W/ExponentialMovingAverage"), w)
  np.testing.assert_array_equal(reader.read("model/conv_in/W"),
                                np.float32(0.5) * w + np.float32(0.01))
  assert ddpm_tf.crc32c(b"123456789") == 0xE3069283        # the CRC-32C check value


def test_tf_import_uses_the_ema_weights_and_gives_diffusers_eps(tf_checkpoint, tmp_path):
  workdir = str(tmp_path / "run")
  r = import_weights(str(tf_checkpoint), workdir, config=tiny_config())
  assert r["step"] == 1234 and r["weights"].startswith("EMA")
  _, family, params, step = load_run(workdir)
  assert step == 1234
  eps = np.asarray(family.eps_fn(params)(jnp.asarray(REF["x"]), jnp.asarray(REF["t"])))
  np.testing.assert_allclose(eps, REF["eps"], rtol=1e-5, atol=1e-5)
  raw = str(tmp_path / "raw")
  import_weights(str(tf_checkpoint), raw, config=tiny_config(), raw=True)
  ema, got = params_of(workdir), params_of(raw)
  for k in ema:
    np.testing.assert_array_equal(got[k], np.float32(0.5) * ema[k] + np.float32(0.01))


def test_tf_checkpoint_damage_is_one_line(tf_checkpoint, tmp_path):
  src = tmp_path / "ckpt"
  shutil.copytree(tf_checkpoint, src)
  prefix = ddpm_tf.find_prefix(str(src))     # the state file's path is of another folder
  assert prefix == str(src / "model.ckpt-1234")
  reader = ddpm_tf.CheckpointReader(prefix)
  data = src / "model.ckpt-1234.data-00000-of-00001"
  entry = reader.entries["model/down_0/block_0/conv1/W/ExponentialMovingAverage"]
  blob = bytearray(data.read_bytes())
  blob[entry.offset + 7] ^= 0x01
  data.write_bytes(bytes(blob))
  with pytest.raises(WeightsError) as e:
    import_weights(str(src), str(tmp_path / "run"), config=tiny_config())
  text = one_line(e)
  assert text.startswith(str(data)) and \
      "tensor model/down_0/block_0/conv1/W/ExponentialMovingAverage fails its CRC32C" in text
  last = max(reader.entries.values(), key=lambda e: e.offset)
  data.write_bytes(bytes(blob[:last.offset + 3]))
  last_name = next(n for n, e in reader.entries.items() if e is last)
  with pytest.raises(WeightsError, match="is cut short") as e:
    reader.read(last_name)
  assert last_name in one_line(e)
  index = src / "model.ckpt-1234.index"
  index.write_bytes(index.read_bytes()[:-20])
  with pytest.raises(WeightsError, match="not a readable TensorFlow checkpoint index") as e:
    import_weights(str(src), str(tmp_path / "run"), config=tiny_config())
  assert one_line(e).startswith(str(index))
  assert sorted(os.listdir(tmp_path)) == ["ckpt"]


def test_tf_checkpoint_without_ema_asks_for_raw(tf_checkpoint):
  reader = ddpm_tf.CheckpointReader(ddpm_tf.find_prefix(str(tf_checkpoint)))
  reader.entries = {k: v for k, v in reader.entries.items()
                    if not k.endswith(ddpm_tf.EMA_SUFFIX)}
  shapes = importer._shapes(importer.release_config(  # pylint: disable=protected-access
      tiny_config(), ddpm_tf.spec_from_checkpoint(reader, 16), "x"))
  with pytest.raises(WeightsError, match=r"has no EMA weights \(import its raw weights with "
                     r"--raw\)") as e:
    ddpm_tf.to_params(reader, shapes, ema=True)
  one_line(e)
  assert len(ddpm_tf.to_params(reader, shapes, ema=False)) == len(shapes)


# ---- the command line ----------------------------------------------------------------------


def cli(*args):
  return subprocess.run([sys.executable, "-m", "diffusion.pretrained", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_cli_import_sample_export(tmp_path):
  workdir, out = str(tmp_path / "run"), str(tmp_path / "exported")
  res = cli("import", TINY_OLD_BIN, f"--workdir={workdir}", "--config=configs/ddpm/cifar10.py",
            "--config.data.image_size=16")
  assert res.returncode == 0, res.stderr[-2000:]
  assert "285,667 parameters" in res.stdout and "attention names query" in res.stdout
  assert "from configs/ddpm/cifar10.py" in res.stdout
  res = subprocess.run([sys.executable, os.path.join(REPO, "sample.py"), f"--workdir={workdir}",
                        "--num_samples=2", "--sampler=ddim", "--steps=2", "--progress=false"],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
  assert res.returncode == 0, res.stderr[-2000:]
  (folder,) = glob.glob(os.path.join(workdir, "samples_0_ddim*"))   # named by sampler, steps, seed
  samples = np.load(os.path.join(folder, "samples.npz"))["arr_0"]
  assert samples.shape == (2, 16, 16, 3) and samples.dtype == np.uint8
  res = cli("export", f"--workdir={workdir}", f"--out={out}")
  assert res.returncode == 0, res.stderr[-2000:]
  assert os.path.isfile(os.path.join(out, diffusers.SAFETENSORS_NAME))


@pytest.mark.slow
def test_cli_errors_are_one_line_with_status_2(tmp_path):
  evil = tmp_path / "evil"
  evil.mkdir()
  shutil.copy(os.path.join(TINY, "config.json"), evil)
  marker = tmp_path / "it_ran"
  with zipfile.ZipFile(evil / diffusers.PICKLE_NAME, "w") as zf:
    zf.writestr("archive/data.pkl", pickle.dumps(_RunsACommand(f"touch {marker}"), protocol=2))
  bad = _copy_fixture(tmp_path)
  _edit_config(bad, downsample_padding=1)
  cases = [
      (("import", str(evil), f"--workdir={tmp_path / 'a'}", "--config=configs/ddpm/cifar10.py",
        "--config.data.image_size=16"), "refusing to load the global"),
      (("import", str(bad), f"--workdir={tmp_path / 'b'}", "--config=configs/ddpm/cifar10.py",
        "--config.data.image_size=16"), "downsample_padding=1 is not this network"),
      (("import", str(tmp_path / "nothing"), f"--workdir={tmp_path / 'c'}"),
       "no such file or folder"),
      (("convert", TINY, f"--workdir={tmp_path / 'd'}"), "'convert' is not a command"),
      (("export", f"--workdir={tmp_path / 'e'}"), "export needs --out=OUT"),
  ]
  for args, message in cases:
    res = cli(*args)
    assert res.returncode == 2, (args, res.stderr[-2000:])
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], \
        (args, res.stderr)
  assert not marker.exists()
  assert sorted(os.listdir(tmp_path)) == ["evil", "src"]


# ---- released weights by their Hugging Face id (issue 31) ----------------------------------

HUB_ID = "google/ddpm-cifar10-32"


def _hub_cache(root, files_from=TINY):
  """A Hugging Face hub cache holding ``HUB_ID`` as the hub's client lays it out:
  models--owner--name/refs/main (the revision) and snapshots/<revision>/<files>; here the
  test fixture's files (a 16 px network)."""
  revision = "0123456789abcdef0123456789abcdef01234567"
  repo = root / ("models--" + HUB_ID.replace("/", "--"))
  (repo / "refs").mkdir(parents=True)
  (repo / "refs" / "main").write_text(revision)
  shutil.copytree(files_from, repo / "snapshots" / revision)
  return root


def test_import_by_hub_id_offline_from_the_cache(tmp_path):
  """HF_HUB_OFFLINE=1 with a cache holding the release: `import google/ddpm-cifar10-32`
  writes the same run as importing the fixture folder; an empty cache is one line saying
  what to download and where to put it."""
  pytest.importorskip("huggingface_hub")
  env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(_hub_cache(tmp_path / "cache")))
  by_id, direct = str(tmp_path / "by_id"), str(tmp_path / "direct")
  res = subprocess.run([sys.executable, "-m", "diffusion.pretrained", "import", HUB_ID,
                        f"--workdir={by_id}", "--config=configs/ddpm/cifar10.py",
                        "--config.data.image_size=16"], cwd=REPO, capture_output=True,
                       text=True, timeout=600, env=env)
  assert res.returncode == 0, res.stderr[-2000:]
  assert res.stdout.startswith(f"{HUB_ID}: getting config.json and the weights from its cache")
  assert f"imported {HUB_ID} (" in res.stdout and "these weights twice" in res.stdout
  import_weights(TINY, direct, config=tiny_config())
  mine, theirs = params_of(by_id), params_of(direct)
  assert mine.keys() == theirs.keys()
  for k in mine:
    np.testing.assert_array_equal(mine[k], theirs[k])
  env["HF_HUB_CACHE"] = str(tmp_path / "empty")
  res = subprocess.run([sys.executable, "-m", "diffusion.pretrained", "import", HUB_ID,
                        f"--workdir={tmp_path / 'none'}"], cwd=REPO, capture_output=True,
                       text=True, timeout=600, env=env)
  assert res.returncode == 2
  (line,) = res.stderr.strip().splitlines()
  assert line.startswith(f"error: {HUB_ID}: could not get it from the Hugging Face hub nor "
                         "its cache") and f"https://huggingface.co/{HUB_ID}" in line
  assert "python -m diffusion.pretrained import weights/ddpm-cifar10-32 --workdir=DIR" in line
  assert not (tmp_path / "none").exists()


def test_hub_id_without_the_hub_package_names_the_extra(monkeypatch):
  from diffusion.pretrained import hub
  monkeypatch.setitem(sys.modules, "huggingface_hub", None)
  assert hub.is_hub_id(HUB_ID) and not hub.is_hub_id(TINY) and not hub.is_hub_id("a/b/c")
  with pytest.raises(diffusion.ConfigError, match=r"pip install '\.\[hub\]'.*https://"
                     r"huggingface\.co/google/ddpm-cifar10-32") as e:
    hub.fetch(HUB_ID)
  one_line(e)

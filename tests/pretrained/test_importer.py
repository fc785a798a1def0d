"""diffusion/pretrained/importer.py: diffusers weights become an ordinary run whose ε and
DDIM chain equal diffusers'; a release told from its folder; malformed or foreign inputs
refused in one line naming the file and the field or tensor, with nothing written.

The reference numbers come from diffusers itself (``tests/fixtures/make_diffusers_fixture.py``,
run once with torch + diffusers; the tests import neither): a tiny DDPM-family
UNet2DModel in both file formats and both attention-name generations, its ε on fixed
inputs, a 10-step DDIMScheduler chain, and the names and shapes of the published
CIFAR-10 and 256 px configurations."""

import io
import json
import os
import shutil
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

import diffusion
from configs.ddpm import cifar10
from diffusion import families, samplers
from diffusion.config import checks
from diffusion.io.workdir import load_config, restore_ema_params
from diffusion.pretrained import diffusers, import_weights, importer
from diffusion.pretrained.network import flatten, WeightsError
from diffusion.paths import REPO



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
  cfg = checks.validate(load_config(workdir))
  family = families.make_family(cfg)
  params, step = restore_ema_params(workdir, family)
  return cfg, family, params, step


def params_of(workdir):
  return {k: np.asarray(v) for k, v in flatten(dict(load_run(workdir)[2])).items()}


def one_line(e) -> str:
  text = str(e.value if hasattr(e, "value") else e)
  assert "\n" not in text, text
  return text


# ---- a release told from its folder ---------------------------------------------------------


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


# ---- import from diffusers: ε and the DDIM chain --------------------------------------------


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
  _, family, params, _ = load_run(imported[0])
  np.testing.assert_allclose(np.asarray(family.process.alphas_cumprod), REF["alphas_cumprod"],
                             rtol=2e-6)
  plan = samplers.make_plan(family.process, method="ddim", num_steps=10, eta=0.0,
                            clip_x0=False, skip_type="uniform")
  np.testing.assert_array_equal(np.asarray(plan.rows["model_t"]), REF["ddim_t"])
  x_T = jnp.asarray(REF["ddim_x"][0])
  _, traj = samplers.run_plan(plan, family.eps_fn(params), x_T.shape, jax.random.PRNGKey(0),
                              x_T=x_T, x0_range=None, trajectory_every=1)
  np.testing.assert_allclose(np.asarray(traj), REF["ddim_x"], rtol=1e-4, atol=1e-4)


# ---- malformed inputs: one line naming the file and the field or tensor ---------------------


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

"""diffusion/pretrained/ddpm_tf.py: DDPM's TensorFlow checkpoints read without TensorFlow
(the checkpoint is written by TensorFlow in a subprocess,
``tests/fixtures/make_ddpm_tf_fixture.py``): EMA weights, damage named, raw weights."""

import os
import shutil
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from diffusion.pretrained import ddpm_tf, diffusers, import_weights, importer
from diffusion.pretrained.network import WeightsError

from tests.conftest import stderr_tail
from tests.pretrained.test_importer import (FIXTURES, load_run, one_line, params_of, REF, TINY, tiny_config)


@pytest.fixture(scope="module")
def tf_checkpoint(tmp_path_factory):
  """A checkpoint written by TensorFlow (in a subprocess) under DDPM's variable names."""
  out = tmp_path_factory.mktemp("ddpm_tf") / "diffusion_tiny_model"
  res = subprocess.run([sys.executable, os.path.join(FIXTURES, "make_ddpm_tf_fixture.py"),
                        str(out), "--step=1234"], capture_output=True, text=True, timeout=600)
  if res.returncode != 0 and "No module named 'tensorflow'" in res.stderr:
    pytest.skip("TensorFlow is not installed (it writes the checkpoint)")
  assert res.returncode == 0, stderr_tail(res.stderr)
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

"""diffusion/pretrained/export.py: a run exported as a diffusers folder reproduces the
original file and imports back bit-exact; a network diffusers lacks is refused."""

import json
import os

import jax
import numpy as np
import pytest

from diffusion import families
from diffusion.config import checks
from diffusion.pretrained import diffusers, export_run, import_weights, importer
from diffusion.pretrained.network import WeightsError

from tests.pretrained.test_importer import one_line, params_of, TINY, tiny_config


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
  cfg = checks.validate(tiny_config())
  cfg = cfg.replace(model=cfg.model.replace(ch=32, ch_mult=(1, 1), num_res_blocks=1,
                                            attn_resolutions=(8,), resamp_with_conv=False))
  workdir = str(tmp_path / "avgpool")
  params = families.make_family(cfg).init_params(jax.random.PRNGKey(0))
  importer.write_run(cfg, params, workdir, 0, {})
  with pytest.raises(WeightsError, match="model.resamp_with_conv=False") as e:
    export_run(workdir, str(tmp_path / "out"))
  one_line(e)
  assert not os.path.exists(tmp_path / "out")

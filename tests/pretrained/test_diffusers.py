"""diffusion/pretrained/diffusers.py: our names and shapes map one-to-one onto the
published diffusers state dicts; both file formats and both attention-name generations
give the same network."""

import os
import shutil

import numpy as np
import pytest
import safetensors.numpy

from configs.ddpm import cifar10
from diffusion.config import checks
from diffusion.pretrained import diffusers, import_weights, importer

from tests.pretrained.test_importer import (load_run, params_of, RELEASES, TINY, tiny_config, TINY_OLD_BIN)


# ---- names, shapes and counts of the published configurations -------------------------------


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
  base = checks.validate(config)
  assert (cfg.model.ch, cfg.model.ch_mult, cfg.model.num_res_blocks,
          cfg.model.attn_resolutions) == (base.model.ch, base.model.ch_mult,
                                          base.model.num_res_blocks, base.model.attn_resolutions)
  # And it goes back to the same config.json (the fields diffusers reads).
  again = diffusers.config_from_spec(diffusers.spec_from_config(r["config"], release))
  assert {k: v for k, v in again.items() if not k.startswith("_") and k != "dropout"} == \
      {k: (list(v) if isinstance(v, tuple) else v) for k, v in r["config"].items()
       if k != "dropout"}


# ---- both file formats, both attention-name generations -------------------------------------


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
  shapes = importer._shapes(checks.validate(load_run(imported[0])[0]))  # pylint: disable=protected-access
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

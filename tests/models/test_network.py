"""diffusion/models/network.py: a network's option rules and its rules against the data,
one line naming the field."""

import pytest

from configs.base import get_config
from diffusion import make_model
from diffusion.errors import ConfigError

from tests.models.test_unet import _model_cfg


@pytest.mark.parametrize("changes, field", [
    (dict(name="resnet"), "model.name"),
    (dict(ch_mult=()), "model.ch_mult"),
    (dict(ch_mult=(1, 0)), "model.ch_mult"),
    (dict(ch=48), "model.ch"),
    (dict(dtype="float16"), "model.dtype"),
    (dict(out_channels=0), "model.out_channels"),
    (dict(num_res_blocks=0), "model.num_res_blocks"),
    (dict(dropout=1.0), "model.dropout"),
    (dict(attn_resolutions=(16, -1)), "model.attn_resolutions"),
    (dict(name="mlp", hidden_dims=()), "model.hidden_dims"),
    (dict(name="analytic"), "model.name"),          # no data_cfg given
])
def test_make_model_rejects_bad_fields(changes, field):
  with pytest.raises(ConfigError) as e:
    make_model(_model_cfg(**changes))
  msg = str(e.value)
  assert field in msg and "\n" not in msg


def test_make_model_checks_against_data_config():
  data = get_config("ddpm").data
  data.image_size = 20                                   # not divisible by 2**3
  with pytest.raises(ConfigError, match="data.image_size"):
    make_model(_model_cfg(), data_cfg=data)
  data.image_size = 32
  with pytest.raises(ConfigError, match="model.out_channels"):
    make_model(_model_cfg(out_channels=4), data_cfg=data)
  data.mixture_stds = (1.0, -1.0)
  with pytest.raises(ConfigError, match="data.mixture_stds"):
    make_model(_model_cfg(name="analytic"), data_cfg=data)

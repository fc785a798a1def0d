"""diffusion/evals/__init__.py: an evaluator that does not apply to a run fails before the
loop opens the data or writes anything."""

import pytest

import diffusion
from diffusion.errors import ConfigError


def test_an_evaluator_that_does_not_apply_fails_before_anything_is_written(tmp_path,
                                                                          monkeypatch):
  """Each evaluator owns its rule (bits/dim needs 8-bit images on a VP process, FID
  images): a run that enables one where it does not apply fails in one line before the
  loop reads data or creates its workdir, as when config validation held these rules."""
  from diffusion import evals  # pylint: disable=import-outside-toplevel
  from diffusion.train import loop  # pylint: disable=import-outside-toplevel
  from tests.train.test_loop import toy_config  # pylint: disable=import-outside-toplevel

  def no_data(*args, **kwargs):
    raise AssertionError("the data were opened before the evaluators' rules were checked")
  monkeypatch.setattr(loop, "make_source", no_data)
  cases = [("bpd", {"every": 8}, r"bits/dim \(eval.bpd, --bpd\) scores 8-bit images"),
           ("fid", {"every": 8, "inception_weights": str(tmp_path / "w.npz")},
            r"FID \(eval.fid, --fid\) needs image data")]
  for name, section, message in cases:
    config = toy_config()
    config.eval[name].update(section)
    with pytest.raises(ConfigError, match=message) as info:
      diffusion.train(config, str(tmp_path / "run"), progress=False)
    assert "\n" not in str(info.value) and not (tmp_path / "run").exists()
  ve = diffusion.make_family({"diffusion": {"variant": "ncsn"}}).config
  with pytest.raises(ConfigError, match="applies to VP variants"):
    evals.check_applies(ve, ["bpd"])

"""diffusion/reproduce/papers/ddpm.py and ddim.py: the digits objectives and DDIM's step
pattern from scratch (long: DIFFUSION_LONG_TESTS=1)."""

import pytest

from diffusion.reproduce import runner

from tests.reproduce.papers.test_ncsn import LONG


@pytest.mark.slow
@pytest.mark.skipif(not LONG, reason="trains four digits U-Nets (~50 min on 2 CPU cores, "
                    "beyond the suite's budget); run with DIFFUSION_LONG_TESTS=1")
def test_digits_objectives_and_ddim_pattern(tmp_path):
  """Both digits entries from scratch, as `python -m diffusion.reproduce` runs them."""
  ok, result = runner.run("digits_objectives", "cpu", str(tmp_path / "objectives"))
  assert ok, result["rows"]
  ok, result = runner.run("ddim_steps", "cpu", str(tmp_path / "ddim"))
  assert ok, result["rows"]
  assert result["pictures"] == ["ddim_steps.png"]

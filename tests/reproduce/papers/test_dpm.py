"""diffusion/reproduce/papers/dpm.py: DPM's Swiss roll bound at the CPU tier."""

import math

import pytest

from diffusion.reproduce import runner


@pytest.mark.slow
def test_dpm_swiss_roll_bound(tmp_path):
  ok, result = runner.run("dpm_swiss_roll", "cpu", str(tmp_path))
  assert ok, result["rows"]
  m = result["measured"]
  assert m["K_bits"] <= m["exact_log_likelihood_bits"]          # a bound is a bound
  assert m["K_minus_L_null"] == pytest.approx(m["K_bits"] + math.log2(2 * math.pi * math.e))

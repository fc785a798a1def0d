"""diffusion.xla_cpu: the CPU convolution setting is in effect, and only when it should be."""

import os

import jax
import jaxlib
import numpy as np
import pytest


from diffusion import xla_cpu


def _conv(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_the_suite_runs_convolutions_on_xla_kernels():
  """conftest calls configure() before JAX starts: no convolution goes to YNNPACK, and the
  result is the float64 reference's (the test fails if the flag stops taking effect)."""
  if not jaxlib_known():
    pytest.skip("the installed jaxlib is not one the flag is known for")
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 6, 6, 4)).astype(np.float32)
  w = rng.standard_normal((3, 3, 4, 5)).astype(np.float32)
  hlo = jax.jit(_conv).lower(x, w).compile().as_text()
  assert " convolution(" in hlo and "__ynn_fusion" not in hlo
  # The same convolution in float64 numpy: sum over the 3x3 window of the padded input.
  xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
  ref = sum(np.einsum("bhwc,co->bhwo", xp[:, i:i + 6, j:j + 6], w[i, j].astype(np.float64))
            for i in range(3) for j in range(3))
  np.testing.assert_allclose(np.asarray(jax.jit(_conv)(x, w)), ref, rtol=1e-5, atol=1e-5)


def jaxlib_known() -> bool:
  return jaxlib.__version__.startswith(xla_cpu.KNOWN_JAXLIB)


@pytest.fixture
def fresh(monkeypatch):
  """A process state in which the backends have not started and XLA_FLAGS is unset."""
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  monkeypatch.delenv("DIFFUSION_EIGEN_CONVOLUTIONS", raising=False)
  monkeypatch.setattr(xla_cpu, "backends_are_initialized", lambda: False)
  monkeypatch.setattr(jaxlib, "__version__", "0.10.2")
  return monkeypatch


def test_configure_adds_the_flag_once(fresh):
  fresh.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
  assert xla_cpu.configure()
  assert os.environ["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=8",
                                             xla_cpu.FLAG]
  assert xla_cpu.configure()          # a second call adds nothing
  assert os.environ["XLA_FLAGS"].count("ynn_fusion_type") == 1


@pytest.mark.parametrize("case", ["opt_out", "user_flag", "unknown_jaxlib"])
def test_configure_leaves_xla_flags_alone(fresh, case):
  user = "--xla_cpu_experimental_ynn_fusion_type=+eltwise"
  if case == "opt_out":
    fresh.setenv("DIFFUSION_EIGEN_CONVOLUTIONS", "0")
  elif case == "user_flag":
    fresh.setenv("XLA_FLAGS", user)
  else:
    fresh.setattr(jaxlib, "__version__", "0.11.0")
  before = os.environ.get("XLA_FLAGS")
  assert not xla_cpu.configure()
  assert os.environ.get("XLA_FLAGS") == before


def test_configure_after_the_backends_started_warns(fresh):
  fresh.setattr(xla_cpu, "backends_are_initialized", lambda: True)
  with pytest.warns(UserWarning, match="before the first computation"):
    assert not xla_cpu.configure()
  assert "XLA_FLAGS" not in os.environ

"""Issue 23: a new user's first hour (accelerator warning, light core, writers)."""

import os

import pytest

from diffusion import cli


@pytest.fixture
def no_accelerator(monkeypatch):
  monkeypatch.delenv("JAX_PLATFORMS", raising=False)
  real_exists = os.path.exists
  monkeypatch.setattr(cli.os.path, "exists",
                      lambda p: False if p in ("/dev/nvidia0", "/dev/accel0") else real_exists(p))
  monkeypatch.setattr("shutil.which", lambda name: None)


def test_gpu_visible_but_jax_on_cpu_warns_in_one_line(no_accelerator, monkeypatch):
  monkeypatch.setattr("shutil.which",
                      lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None)
  line = cli.accelerator_warning(["cpu"])
  assert line is not None and "\n" not in line
  assert "GPU" in line and "only the CPU" in line and ".[cuda12]" in line
  assert cli.accelerator_warning(["gpu"]) is None          # JAX has it: silent
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")                 # CPU on purpose: silent
  assert cli.accelerator_warning(["cpu"]) is None


def test_dev_nvidia0_and_dev_accel0(no_accelerator, monkeypatch):
  real_exists = os.path.exists
  monkeypatch.setattr(cli.os.path, "exists",
                      lambda p: True if p == "/dev/nvidia0" else real_exists(p)
                      if p != "/dev/accel0" else False)
  assert "GPU" in cli.accelerator_warning(["cpu"])
  monkeypatch.setattr(cli.os.path, "exists",
                      lambda p: True if p == "/dev/accel0" else real_exists(p)
                      if p != "/dev/nvidia0" else False)
  line = cli.accelerator_warning(["cpu"])
  assert "TPU" in line and ".[tpu]" in line


def test_no_accelerator_no_warning(no_accelerator, capsys):
  assert cli.accelerator_warning(["cpu"]) is None
  cli.warn_if_accelerator_unused()
  assert capsys.readouterr().err == ""

"""diffusion.xla_cpu: the CPU convolution kernel is measured once per machine, cached, reused,
overridden by the variable, skipped where no convolution runs, and in effect."""

import json
import os
import re

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import pytest


from diffusion import xla_cpu
from diffusion.errors import ConfigError
from diffusion.train.step import scan_steps


def _conv(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_the_suite_runs_convolutions_on_xla_kernels():
  """conftest fixes the kernel to Eigen before JAX starts: no convolution goes to YNNPACK,
  and the result is the float64 reference's (the test fails if the flag stops taking
  effect)."""
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


# A tiny convolutional config (what configure reads of a run's config).
# (XLA leaves convolutions smaller than those of 8x8 images with 32 channels on Eigen.)
TINY_UNET = {"model": {"name": "unet", "ch": 32, "ch_mult": (1, 2)},
             "data": {"image_size": 8}, "training": {"batch_size": 2}}


@pytest.fixture
def fresh(monkeypatch, tmp_path):
  """A process state in which the backends have not started, XLA_FLAGS and the kernel
  variables are unset, JAX computes on the CPU, and the cache folder is empty."""
  for name in ("XLA_FLAGS", xla_cpu.ENV, xla_cpu.LEGACY_ENV):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("DIFFUSION_CACHE_DIR", str(tmp_path / "cache"))
  monkeypatch.setattr(xla_cpu, "backends_are_initialized", lambda: False)
  monkeypatch.setattr(jaxlib, "__version__", "0.10.2")
  return monkeypatch


@pytest.fixture
def workers(fresh):
  """Stands in for the measuring processes: ``times[kernel]`` ms per shape-direction
  (a fixed table, so the choice is known); records each call."""
  calls, times = [], {"eigen": 2.0, "ynnpack": 3.0}

  def run_worker(kernel, batch, shapes, repeats):
    calls.append(kernel)
    if times[kernel] is None:
      return None, "exit status 1: boom"
    return {"kernel": kernel, "ms": [[times[kernel]] * 3 for _ in shapes]}, ""

  fresh.setattr(xla_cpu, "run_worker", run_worker)
  return calls, times


def _no_workers(*args):
  raise AssertionError(f"measured although it should not: {args}")


def test_auto_measures_once_prints_one_line_and_caches(workers, capsys):
  calls, _ = workers
  assert xla_cpu.configure(TINY_UNET) == "eigen"
  assert os.environ["XLA_FLAGS"].split() == [xla_cpu.FLAG]
  assert calls == ["eigen", "ynnpack"]          # 6 ms against 9 per shape: one round
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("CPU convolutions: eigen (measured: eigen")
  assert "ynnpack 18 ms" in lines[0] and xla_cpu.cache_path() in lines[0]
  record, = json.load(open(xla_cpu.cache_path(), encoding="utf-8")).values()
  assert record["choice"] == "eigen" and record["ms"] == {"eigen": 12.0, "ynnpack": 18.0}
  assert record["batch"] == 2 and record["shapes"] == [[8, 8, 32, 32, 3], [4, 4, 64, 64, 3]]


def test_the_cached_choice_is_reused(workers, capsys):
  calls, times = workers
  times.update(eigen=3.0, ynnpack=2.0)
  assert xla_cpu.configure(TINY_UNET) == "ynnpack"
  assert "XLA_FLAGS" not in os.environ            # YNNPACK is XLA's own default
  capsys.readouterr()
  workers[0].clear()
  times.update(eigen=1.0)          # a new measurement would now choose Eigen
  assert xla_cpu.configure(TINY_UNET) == "ynnpack"
  assert calls == [] and capsys.readouterr().err == ""
  # Another machine (other CPU flags, core count or jaxlib) or other shapes: measured anew.
  workers[1].update(eigen=1.0)
  assert xla_cpu.configure(dict(TINY_UNET, training={"batch_size": 4})) == "eigen"
  assert calls == ["eigen", "ynnpack"]


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"KEY": {"choice": "oneDNN"}}',
                                     '{"KEY": 3}'])
def test_a_corrupt_cache_file_is_measured_again(workers, capsys, content):
  calls, _ = workers
  path = xla_cpu.cache_path()
  os.makedirs(os.path.dirname(path))
  key = xla_cpu.machine_key(*xla_cpu.conv_shapes(TINY_UNET))
  with open(path, "w", encoding="utf-8") as f:
    f.write(content.replace("KEY", key))
  assert xla_cpu.configure(TINY_UNET) == "eigen"
  assert calls == ["eigen", "ynnpack"]
  err = capsys.readouterr().err
  assert "Traceback" not in err and err.count("\n") == 1
  assert json.load(open(path, encoding="utf-8"))[key]["choice"] == "eigen"


def test_close_times_get_a_second_round_in_the_other_order(workers):
  calls, times = workers
  times.update(eigen=2.0, ynnpack=2.1)
  assert xla_cpu.configure(TINY_UNET) == "eigen"
  assert calls == ["eigen", "ynnpack", "ynnpack", "eigen"]


def test_a_failed_candidate_drops_out_and_all_failing_keeps_eigen(workers, capsys):
  calls, times = workers
  times.update(eigen=None)
  assert xla_cpu.configure(TINY_UNET) == "ynnpack"
  record, = json.load(open(xla_cpu.cache_path(), encoding="utf-8")).values()
  assert record["ms"] == {"ynnpack": 18.0} and "eigen: exit status 1" in record["error"]
  times.update(ynnpack=None)
  line = capsys.readouterr().err
  assert xla_cpu.configure(dict(TINY_UNET, training={"batch_size": 3})) == "eigen"
  line = capsys.readouterr().err
  assert "measurement failed (eigen: exit status 1: boom; ynnpack: exit status 1" in line


@pytest.mark.parametrize("value, kernel", [("eigen", "eigen"), ("ynnpack", "ynnpack"),
                                           (" Eigen ", "eigen")])
def test_the_variable_overrides_without_measuring(fresh, value, kernel):
  fresh.setattr(xla_cpu, "run_worker", _no_workers)
  fresh.setenv(xla_cpu.ENV, value)
  fresh.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
  assert xla_cpu.configure(TINY_UNET) == kernel
  expected = ["--xla_force_host_platform_device_count=8"] + ([xla_cpu.FLAG] if kernel == "eigen"
                                                              else [])
  assert os.environ["XLA_FLAGS"].split() == expected
  assert xla_cpu.configure(TINY_UNET) == kernel    # a second call adds nothing
  assert os.environ["XLA_FLAGS"].split() == expected
  assert not os.path.exists(xla_cpu.cache_path())


@pytest.mark.parametrize("legacy, kernel", [("1", "eigen"), ("0", "ynnpack")])
def test_the_former_switch_still_works(fresh, legacy, kernel):
  fresh.setattr(xla_cpu, "run_worker", _no_workers)
  fresh.setenv(xla_cpu.LEGACY_ENV, legacy)
  assert xla_cpu.configure() == kernel
  assert (xla_cpu.FLAG in os.environ.get("XLA_FLAGS", "")) == (kernel == "eigen")


def test_a_bad_variable_is_one_clear_error(fresh):
  fresh.setenv(xla_cpu.ENV, "onednn")
  with pytest.raises(ConfigError, match="DIFFUSION_CPU_CONVOLUTIONS='onednn' is not valid; "
                                        "set it to auto"):
    xla_cpu.configure(TINY_UNET)


@pytest.mark.parametrize("case", ["mlp", "vae", "gpu"])
def test_nothing_is_measured_where_no_convolution_runs_on_a_cpu(fresh, case):
  fresh.setattr(xla_cpu, "run_worker", _no_workers)
  from configs.ddpm import toy_mixture  # pylint: disable=import-outside-toplevel
  from configs.vae import digits  # pylint: disable=import-outside-toplevel
  config = toy_mixture.get_config()
  if case == "vae":
    config = digits.get_config()
  elif case == "gpu":
    config = TINY_UNET
    fresh.setenv("JAX_PLATFORMS", "cuda,cpu")
  assert xla_cpu.configure(config) == ""
  assert "XLA_FLAGS" not in os.environ and not os.path.exists(xla_cpu.cache_path())


@pytest.mark.parametrize("case", ["user_flag", "unknown_jaxlib"])
def test_configure_leaves_xla_flags_alone(fresh, case):
  fresh.setattr(xla_cpu, "run_worker", _no_workers)
  user = "--xla_cpu_experimental_ynn_fusion_type=+eltwise"
  if case == "user_flag":
    fresh.setenv("XLA_FLAGS", user)
    expected = "ynnpack"      # the user's flags keep YNNPACK's convolutions
  else:
    fresh.setattr(jaxlib, "__version__", "0.11.0")
    expected = ""
  before = os.environ.get("XLA_FLAGS")
  assert xla_cpu.configure(TINY_UNET) == expected
  assert os.environ.get("XLA_FLAGS") == before


def test_configure_after_the_backends_started_warns(fresh):
  fresh.setattr(xla_cpu, "run_worker", _no_workers)
  fresh.setattr(xla_cpu, "backends_are_initialized", lambda: True)
  with pytest.warns(UserWarning, match="before the first computation"):
    assert xla_cpu.configure(TINY_UNET) == ""
  assert "XLA_FLAGS" not in os.environ


def test_the_shapes_come_from_the_config_and_the_batch_is_capped():
  from configs.ddpm import cifar10, quickstart  # pylint: disable=import-outside-toplevel
  # CIFAR-10 at its batch 128: the 32x32 3x3 convolution costs 2 * 32² * 128² * 9 = 0.302
  # GFLOP per image, so at most 8 images stay under 2.5 GFLOP.
  assert xla_cpu.conv_shapes(cifar10.get_config()) == (
      8, [(32, 32, 128, 128, 3), (16, 16, 256, 256, 3), (4, 4, 256, 256, 3)])
  assert xla_cpu.conv_shapes() == xla_cpu.conv_shapes(cifar10.get_config())
  assert xla_cpu.conv_shapes(quickstart.get_config()) == (
      64, [(8, 8, 32, 32, 3), (4, 4, 64, 64, 3)])


def test_the_automatic_choice_measures_for_real(fresh, capsys):
  """The whole path once, with real processes on a tiny shape set: both kernels are timed,
  each really ran on its kernel, the choice is the faster and is in effect in XLA_FLAGS."""
  if not jaxlib_known():
    pytest.skip("the installed jaxlib is not one the flag is known for")
  kernel = xla_cpu.configure(TINY_UNET)
  record, = json.load(open(xla_cpu.cache_path(), encoding="utf-8")).values()
  assert record.get("error", "") == "", record
  assert record["ran_on"] == {"eigen": "eigen", "ynnpack": "ynnpack"}
  assert all(ms > 0 for ms in record["ms"].values())
  assert kernel == min(record["ms"], key=record["ms"].get)
  assert (xla_cpu.FLAG in os.environ.get("XLA_FLAGS", "")) == (kernel == "eigen")
  assert capsys.readouterr().err.startswith(f"CPU convolutions: {kernel} (measured: ")


# ---- loop bodies: scan_steps writes a convolutional step out on the CPU -------------------


def _conv_step(w, x):
  """One gradient step of sum(tanh(conv(x, w))²) in w: a forward and a kernel-gradient
  convolution."""
  loss = lambda w: jnp.sum(jnp.tanh(_conv(x, w)) ** 2)  # noqa: E731
  value, grad = jax.value_and_grad(loss)(w)
  return w - 1e-3 * grad, {"loss": value}


def _dense_step(w, x):
  loss = lambda w: jnp.sum(jnp.tanh(x.reshape(x.shape[0], -1)[:, :w.shape[0]] @ w) ** 2)  # noqa: E731
  value, grad = jax.value_and_grad(loss)(w)
  return w - 1e-3 * grad, {"loss": value}


def _dim_labels(hlo: str):
  return re.findall(r" convolution\(.*?dim_labels=(\S+?),", hlo)


def test_scan_steps_writes_out_a_convolutional_step_on_the_cpu():
  """XLA:CPU brings a convolution into its kernels' form (NHWC input, HWIO kernel) only at
  the program's top level: in a loop body the kernel gradient keeps transposed dimension
  labels (a generic loop nest, ~20x slower: BENCHMARKS.md). scan_steps therefore unrolls a
  convolutional step on the CPU (no while loop, every convolution in the kernels' form),
  keeps the loop for a step without convolutions, and computes the same steps either way."""
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.standard_normal((3, 3, 8, 8)).astype(np.float32) * 0.1)
  x = jnp.asarray(rng.standard_normal((4, 6, 6, 8)).astype(np.float32))
  rolled = jax.jit(scan_steps(_conv_step, 3, False, unroll=False))
  chosen = jax.jit(scan_steps(_conv_step, 3, False))
  rolled_hlo = rolled.lower(w, x).compile().as_text()
  chosen_hlo = chosen.lower(w, x).compile().as_text()
  assert " while(" in rolled_hlo and " while(" not in chosen_hlo
  assert set(_dim_labels(chosen_hlo)) == {"b01f_01io->b01f"}
  if jaxlib_known():   # the cause, as jaxlib 0.10 compiles it
    assert set(_dim_labels(rolled_hlo)) - {"b01f_01io->b01f"}
  single = jax.jit(_conv_step)
  ref = w
  for _ in range(3):
    ref, metrics = single(ref, x)
  for fn in (rolled, chosen):
    out, last = fn(w, x)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(last["loss"], metrics["loss"], rtol=1e-6)
  # One batch per step (streamed data): the same choice.
  per_step = jax.jit(scan_steps(_conv_step, 3, True))
  assert " while(" not in per_step.lower(w, jnp.stack([x] * 3)).compile().as_text()
  np.testing.assert_allclose(per_step(w, jnp.stack([x] * 3))[0], ref, rtol=1e-6, atol=1e-7)
  # Without a convolution the loop stays (a scanned MLP step is fast on XLA:CPU).
  dense = jax.jit(scan_steps(_dense_step, 3, False))
  assert " while(" in dense.lower(jnp.ones((8, 4)), x).compile().as_text()


def test_more_steps_than_the_unroll_limit_keep_the_loop_and_warn():
  w = jnp.zeros((3, 3, 8, 8))
  x = jnp.zeros((4, 6, 6, 8))
  k = xla_cpu.UNROLL_LIMIT + 1
  hlo = jax.jit(scan_steps(_conv_step, k, False)).lower(w, x).compile().as_text()
  assert " while(" in hlo
  unet = dict(TINY_UNET, training={"batch_size": 2, "steps_per_call": k})
  line = xla_cpu.steps_per_call_warning(unet, "cpu")
  assert line.startswith(f"warning: training.steps_per_call={k} on a CPU") and "\n" not in line
  assert xla_cpu.steps_per_call_warning(unet, "gpu") == ""
  assert xla_cpu.steps_per_call_warning(
      dict(unet, training={"steps_per_call": xla_cpu.UNROLL_LIMIT}), "cpu") == ""
  assert xla_cpu.steps_per_call_warning(
      dict(unet, model={"name": "mlp"}), "cpu") == ""

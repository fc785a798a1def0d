"""The project's XLA:CPU setting: which kernel computes the convolutions, chosen by measurement.

jax 0.10's XLA:CPU has two kernels for a convolution: YNNPACK (XLA's default: top-level
convolutions become ``__ynn_fusion`` custom fusions) and XLA's own Eigen convolution
(``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution``). Which is faster
depends on the CPU: for the DDPM CIFAR-10 U-Net's step at batch 8, Eigen took 0.68x
YNNPACK's time on a 2-core AMD EPYC (Zen 1), while on a 2-core AVX-512 EPYC (Zen 4) the
whole steps were within their round-to-round spread (BENCHMARKS.md, "CPU kernels per
machine"). (The oneDNN and XNNPACK flags of this jaxlib leave convolutions where they
are, and its oneDNN custom calls are not built in: there is no third candidate.)

:func:`configure` picks the kernel for this machine and sets ``XLA_FLAGS`` to it. It has
to run before JAX starts its CPU backend (the flags are read once, then); the command
lines (``train.py``, ``sample.py``, ``python -m diffusion.reproduce``, the benchmarks)
and the test suite call it first thing, and a library user calls it before the first
computation. The choice, in order:

1. ``XLA_FLAGS`` already sets ``--xla_cpu_experimental_ynn_fusion_type``: yours wins.
2. ``DIFFUSION_CPU_CONVOLUTIONS=eigen`` or ``=ynnpack``: that kernel
   (``DIFFUSION_EIGEN_CONVOLUTIONS=1`` / ``=0``, the former switch, say the same).
3. ``auto`` (the default): the kernel measured fastest on this machine. The first time
   for a (CPU model and flags, core count, jaxlib version, convolution shapes), each
   candidate times the U-Net's convolutions (:func:`conv_shapes`: the 3x3 convolutions of
   the top, the second and the lowest resolution, forward and both gradients, at the
   run's batch, capped so one convolution is at most 2.5 GFLOP) in a process of its own
   (``diffusion/conv_timing.py``); a candidate within 10% of the other is timed again. The
   choice and its times are printed once (one line on stderr) and kept in
   ``cpu_convolutions.json`` beside the compilation cache (``~/.cache/diffusion/``, see
   :mod:`diffusion.compile_cache`); later runs read it. This costs 10-30 s of a 2-core
   machine (more under load), once; an unreadable file is measured again.

Nothing is measured or set (the return value is ``""``) when: the config's network has no
convolution (``mlp``, ``analytic``, ``mlp_vae``); JAX will compute on a GPU or TPU; the
installed jaxlib is not a version the flag is known for (an unknown flag makes XLA abort
at start-up); or JAX's backends are already running (then it warns). The kernel changes
only which code computes a convolution: results agree to float32 rounding.
"""

import hashlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import jax
import jaxlib

from diffusion import compile_cache
from diffusion.errors import ConfigError
from diffusion.io import atomic
from diffusion.paths import PACKAGE

try:  # JAX has no public call that says whether its backends started (0.10 to 0.12).
  from jax._src.xla_bridge import backends_are_initialized
except ImportError:  # a JAX that moved it: assume not started (the flag is then harmless)
  def backends_are_initialized() -> bool:
    return False

FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
# The candidates: what each adds to XLA_FLAGS (YNNPACK is XLA's own default).
KERNELS = {"eigen": FLAG, "ynnpack": ""}
# jaxlib versions whose XLA has this flag (checked by reading the flag list of each).
KNOWN_JAXLIB = ("0.10.",)
ENV = "DIFFUSION_CPU_CONVOLUTIONS"
LEGACY_ENV = "DIFFUSION_EIGEN_CONVOLUTIONS"
CHOICES = ("auto",) + tuple(KERNELS)
CACHE_FILE = "cpu_convolutions.json"
# A second round of both candidates when the totals differ by less than this fraction.
CLOSE = 0.10
MAX_GFLOP = 2.5         # the measured batch is capped so one convolution costs at most this
TIMEOUT_S = 180         # per candidate process; a candidate that fails or hangs drops out
WORKER = os.path.join(PACKAGE, "conv_timing.py")

Shape = Tuple[int, int, int, int, int]   # (H, W, Cin, Cout, kernel size)


def configure(config=None) -> str:
  """Sets ``XLA_FLAGS`` to this machine's faster convolution kernel (module docstring).

  Args:
    config: the run's config (a ConfigDict, dataclass or dict with ``model``, ``data``,
      ``training`` sections), or None: then the DDPM CIFAR-10 U-Net's shapes at batch 8.
  Returns:
    "eigen" or "ynnpack": the kernel in effect for this process; "" where nothing was
    chosen (no convolutions, not a CPU, an unknown jaxlib, the backends already started).
  Raises:
    ConfigError: DIFFUSION_CPU_CONVOLUTIONS is not auto, eigen or ynnpack.
  """
  wanted = requested_kernel()
  current = os.environ.get("XLA_FLAGS", "")
  if "xla_cpu_experimental_ynn_fusion_type" in current:
    return "eigen" if FLAG in current.split() else "ynnpack"
  if not jaxlib.__version__.startswith(KNOWN_JAXLIB):
    return ""
  if wanted == "auto" and (not has_convolutions(config) or not runs_on_cpu()):
    return ""
  if backends_are_initialized():
    warnings.warn("diffusion.xla_cpu.configure() ran after JAX started its backends; "
                  f"to use it, call it before the first computation or set XLA_FLAGS={FLAG}.",
                  stacklevel=2)
    return ""
  kernel = wanted if wanted != "auto" else cached_or_measured(config)
  if KERNELS[kernel]:
    os.environ["XLA_FLAGS"] = f"{current} {KERNELS[kernel]}".strip()
  return kernel


def requested_kernel() -> str:
  """``DIFFUSION_CPU_CONVOLUTIONS`` (auto, eigen, ynnpack; default auto), or the former
  ``DIFFUSION_EIGEN_CONVOLUTIONS`` (1: eigen, 0: ynnpack) when only that is set."""
  value = os.environ.get(ENV, "").strip().lower()
  if not value:
    legacy = os.environ.get(LEGACY_ENV, "").strip()
    value = {"1": "eigen", "0": "ynnpack"}.get(legacy, "auto")
  if value not in CHOICES:
    raise ConfigError(f"{ENV}={os.environ[ENV]!r} is not valid; set it to auto (measure "
                      "once per machine), eigen or ynnpack, or unset it.")
  return value


def _field(section, name: str, default):
  """``section.name`` of a ConfigDict, dataclass or dict; ``default`` when absent/None."""
  if section is None:
    return default
  value = section.get(name) if isinstance(section, dict) else getattr(section, name, None)
  return default if value is None else value


def has_convolutions(config) -> bool:
  """Whether the config's network has convolutions (unknown: yes): a registered network
  says so itself (``Network.convolutional``); the VAE's networks are MLPs."""
  # Imported here: the network registry loads Flax, which a command needs only after this.
  from diffusion import models  # pylint: disable=import-outside-toplevel
  name = _field(_field(config, "model", None), "name", "")
  if name in models.VAE_NETWORKS:
    return False
  network = models.NETWORKS.get(name)
  return network is None or network.convolutional


def runs_on_cpu() -> bool:
  """Whether JAX's default backend will be the CPU: ``JAX_PLATFORMS`` names it first, or
  is unset and no GPU/TPU plugin has a device to use. Reads no JAX state."""
  platforms = os.environ.get("JAX_PLATFORMS", "").strip().lower()
  if platforms:
    return platforms.split(",")[0].strip() == "cpu"
  plugin = any(importlib.util.find_spec(name) is not None
               for name in ("jax_cuda12_plugin", "jax_cuda13_plugin", "libtpu"))
  device = any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/accel0", "/dev/vfio/0"))
  return not (plugin and device)


def conv_shapes(config=None) -> Tuple[int, List[Shape]]:
  """(batch, shapes) the measurement times, from the config's U-Net: its 3x3 convolution
  (ch * ch_mult[i] channels in and out) at the top resolution, the next one down and the
  lowest (the U-Net's 1x1 projections are dense layers, not convolutions). The batch is
  the run's (``training.batch_size``), capped so that the top convolution costs at most
  :data:`MAX_GFLOP`; without a config, the DDPM CIFAR-10 U-Net (32x32, ch 128, ch_mult
  (1, 2, 2, 2)) at batch 8."""
  model, data = _field(config, "model", None), _field(config, "data", None)
  size = int(_field(data, "image_size", 32))
  ch = int(_field(model, "ch", 0) or _field(model, "ngf", 128))
  mult = tuple(int(m) for m in _field(model, "ch_mult", (1, 2, 2, 2))) or (1,)
  batch = int(_field(_field(config, "training", None), "batch_size", 8))
  levels = sorted({0, min(1, len(mult) - 1), len(mult) - 1})
  shapes = [(max(1, size >> i), max(1, size >> i), ch * mult[i], ch * mult[i], 3)
            for i in levels]
  gflop_per_image = 2 * size * size * (ch * mult[0]) ** 2 * 9 / 1e9
  return max(1, min(batch, int(MAX_GFLOP // gflop_per_image))), shapes


def cache_path() -> str:
  """``cpu_convolutions.json`` beside the compilation cache's folder."""
  return os.path.join(os.path.dirname(compile_cache.folder()), CACHE_FILE)


def machine_key(batch: int, shapes: Sequence[Shape]) -> str:
  """What a measurement holds for: the CPU (model name and feature flags), the core
  count, the jaxlib version, the batch and the shapes (a short hash)."""
  model, flags = platform.processor() or platform.machine(), ""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      first_cpu = f.read().split("\n\n")[0]
    info = {k.strip(): v.strip() for k, v in (line.split(":", 1)
                                              for line in first_cpu.splitlines() if ":" in line)}
    model = info.get("model name", model)
    flags = " ".join(sorted(info.get("flags", "").split()))
  except OSError:
    pass
  text = json.dumps([model, flags, os.cpu_count(), jaxlib.__version__, batch,
                     [list(s) for s in shapes]])
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_cache(path: str) -> Dict[str, dict]:
  """The cache's records; {} when the file is missing or unreadable."""
  try:
    with open(path, encoding="utf-8") as f:
      records = json.load(f)
  except (OSError, ValueError):
    return {}
  return records if isinstance(records, dict) else {}


def cached_or_measured(config=None) -> str:
  """The kernel of this machine's cached measurement, or of a new one (then printed and
  cached)."""
  batch, shapes = conv_shapes(config)
  key, path = machine_key(batch, shapes), cache_path()
  records = read_cache(path)
  record = records.get(key)
  if isinstance(record, dict) and record.get("choice") in KERNELS:
    return record["choice"]
  t0 = time.perf_counter()
  result = measure(batch, shapes)
  totals = result["ms"]
  choice = min(totals, key=totals.get) if totals else "eigen"
  record = dict(result, choice=choice, batch=batch, shapes=[list(s) for s in shapes],
                jaxlib=jaxlib.__version__, cpu_count=os.cpu_count(),
                seconds=round(time.perf_counter() - t0, 1))
  records[key] = record
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic.write_json(path, records)
    kept = f"kept in {path}"
  except OSError:
    kept = f"not kept: {path} is not writable"
  print(describe(record, kept), file=sys.stderr, flush=True)
  return choice


def describe(record: dict, kept: str) -> str:
  """The one line that reports a measurement."""
  times = ", ".join(f"{k} {v:.0f} ms" for k, v in sorted(record["ms"].items(),
                                                         key=lambda kv: kv[1]))
  why = (f"measured: {times}" if times else f"measurement failed ({record['error']}); "
         "the former default")
  return (f"CPU convolutions: {record['choice']} ({why}; the U-Net's 3x3 "
          f"convolutions at batch {record['batch']}, forward + both gradients; "
          f"{record['seconds']:.0f} s, once for this CPU and jaxlib {record['jaxlib']}; {kept}; "
          f"{ENV}=eigen|ynnpack overrides)")


def measure(batch: int, shapes: Sequence[Shape], kernels: Sequence[str] = tuple(KERNELS),
            repeats: int = 3) -> dict:
  """One process per kernel (:data:`WORKER`) times the shapes' three convolutions; a
  second round, in the other order, keeps each kernel's faster time when the first
  round's totals are within :data:`CLOSE` of each other. A kernel whose process fails or
  outlasts :data:`TIMEOUT_S` is left out.

  Returns:
    {"ms": {kernel: total ms}, "ran_on": {kernel: what XLA compiled the convolutions to,
    "ynnpack" or "eigen"}, "error": why kernels were left out, or ""}.
  """
  totals: Dict[str, float] = {}
  ran_on: Dict[str, str] = {}
  errors: List[str] = []
  for attempt in range(2):
    for kernel in (kernels if attempt == 0 else tuple(reversed(kernels))):
      if attempt and kernel not in totals:
        continue
      result, err = run_worker(kernel, batch, shapes, repeats)
      if result is None:
        errors.append(f"{kernel}: {err}")
        continue
      total = float(sum(sum(row) for row in result["ms"]))
      totals[kernel] = min(totals.get(kernel, float("inf")), total)
      ran_on[kernel] = result["kernel"]
    if len(totals) < 2 or max(totals.values()) > (1 + CLOSE) * min(totals.values()):
      break
  return {"ms": totals, "ran_on": ran_on, "error": "; ".join(errors)}


def run_worker(kernel: str, batch: int, shapes: Sequence[Shape],
               repeats: int) -> Tuple[Optional[dict], str]:
  """(:data:`WORKER`'s result under ``kernel``'s flags, "") or (None, why there is none)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {KERNELS[kernel]}".strip())
  spec = json.dumps({"batch": batch, "shapes": [list(s) for s in shapes], "repeats": repeats})
  # Run the file, not the package (whose import costs seconds); dropping '' from sys.path
  # keeps a folder of the working directory from shadowing a library.
  code = ("import runpy, sys; sys.path.pop(0); sys.argv = sys.argv[1:]; "
          "runpy.run_path(sys.argv[0], run_name='__main__')")
  try:
    out = subprocess.run([sys.executable, "-c", code, WORKER, spec], env=env,
                         capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
  except subprocess.TimeoutExpired:
    return None, f"no result in {TIMEOUT_S} s"
  except OSError as e:
    return None, str(e)
  try:
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if len(result["ms"]) == len(shapes) and result["kernel"] in KERNELS:
      return result, ""
  except (IndexError, KeyError, TypeError, ValueError):
    pass
  last = (out.stderr.strip().splitlines() or ["no output"])[-1]
  return None, f"exit status {out.returncode}: {last[:200]}"


# scan_steps writes out at most this many steps (compilation grows about K-fold).
UNROLL_LIMIT = 8


def steps_per_call_warning(config, platform: str) -> str:
  """The one line the training loop prints when ``training.steps_per_call`` exceeds
  :data:`UNROLL_LIMIT` for a convolutional network on the CPU (``platform``: the devices'
  platform), else "". Such a call keeps its loop, whose gradient convolutions XLA:CPU runs
  20-50x slower (:func:`slow_in_a_loop`)."""
  k = int(_field(_field(config, "training", None), "steps_per_call", 1))
  if platform != "cpu" or k <= UNROLL_LIMIT or not has_convolutions(config):
    return ""
  return (f"warning: training.steps_per_call={k} on a CPU runs this convolutional network's "
          f"steps 20-50x slower (XLA:CPU loop bodies); use at most {UNROLL_LIMIT} (those "
          "calls are written out, same speed as 1) or 1.")


def slow_in_a_loop(fn: Callable, *args) -> bool:
  """Whether XLA:CPU would run ``fn(*args)`` much slower inside a loop body (``lax.scan``,
  ``lax.map``, ``while_loop``) than at the top level of a program: JAX computes on the
  CPU and ``fn`` has a convolution. XLA:CPU rewrites a convolution into the form its Eigen
  and YNNPACK kernels take (input NHWC, kernel HWIO) only in the program's entry
  computation (its ``ConvCanonicalization`` pass); the gradient convolutions of a loop body
  keep their transposed dimension numbers and run as a generic loop nest (about 20x slower
  for the quickstart's training step, BENCHMARKS.md). ``args`` may be tracers."""
  if jax.default_backend() != "cpu":
    return False
  return "conv_general_dilated" in primitives(jax.make_jaxpr(fn)(*args).jaxpr)


def primitives(jaxpr) -> set:
  """The names of the primitives of ``jaxpr`` and of the jaxprs nested in it (a scan's
  body, a cond's branches, a custom_vjp's rule)."""
  names = set()
  for eqn in jaxpr.eqns:
    names.add(eqn.primitive.name)
    for param in eqn.params.values():
      for sub in (param if isinstance(param, (tuple, list)) else (param,)):
        inner = getattr(sub, "jaxpr", sub)    # a ClosedJaxpr holds its Jaxpr
        if hasattr(inner, "eqns"):
          names |= primitives(inner)
  return names

"""Test-wide settings: CPU only, no network, quiet TensorFlow; and the fixtures that tests
in several folders share (processes, the official NCSN checkpoints).

tests/ mirrors the package: tests/<subpackage>/test_<module>.py tests
diffusion/<subpackage>/<module>.py (test_init.py a package's __init__.py, test_main.py its
``python -m diffusion.<subpackage>`` command), tests/commands/ the train.py and sample.py
command lines, and tests/test_<module>.py the top-level modules and the repository's
configs/ and docs/; fixture files live in tests/fixtures/."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# tfds must never try to download during tests (it would hang without network).
os.environ.setdefault("TFDS_DISABLE_DOWNLOAD", "1")

import collections
import lzma
import pathlib

import pytest

import diffusion
from diffusion import cli, paths
from diffusion.errors import ConfigError

# The commands' start-up: tests compile many of the same programs (and the CLIs they start
# do too), so share them in the persistent cache; the CPU convolution kernel is fixed to
# Eigen so that the suite (and every command it starts) neither measures on a fresh machine
# nor depends on what a measurement chose (tests/test_xla_cpu.py tests the automatic choice).
os.environ.setdefault("DIFFUSION_CPU_CONVOLUTIONS", "eigen")
cli.start_computing()

REPO = pathlib.Path(paths.REPO)
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data():
  """Path of ../shared/data; skips the test when it is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"{SHARED_DATA} is absent (real MNIST/CIFAR files live there)")
  return SHARED_DATA


# Python's fault handler (absl's app.run turns it on) ends a crashed command's stderr with
# a list of about a hundred extension modules, which filled the tail an assertion showed.
_FATAL = "Fatal Python error"
_MODULES = "\nExtension modules:"


def stderr_tail(stderr: str, limit: int = 3000) -> str:
  """A failed command's stderr for an assertion message: its last ``limit`` characters,
  or, when the process crashed natively (a "Fatal Python error" dump), what the library
  printed just before the dump (its own reason: a failed check, an uncaught C++ exception)
  and the dump's stacks, without the list of extension modules."""
  start = stderr.find(_FATAL)
  if start < 0:
    return stderr[-limit:]
  end = stderr.find(_MODULES, start)
  dump = stderr[start:end if end >= 0 else len(stderr)]
  return stderr[max(0, start - limit // 2):start] + dump[:limit]


@pytest.fixture(scope="module")
def vp():
  """DDPM's process: linear beta 1e-4 -> 0.02, T=1000 (configs/base.py defaults)."""
  from configs.base import get_config
  from diffusion import make_process
  return make_process(get_config("ddpm").diffusion)


@pytest.fixture(scope="module")
def ve():
  """NCSN's process: geometric sigma 0.01 -> 1, L=10."""
  from configs.base import get_config
  from diffusion import make_process
  return make_process(get_config("ncsn").diffusion)


class Mutations:
  """Seeded mutations of an outside file, for the fuzz tests of its reader.

  ``of_bytes(data)`` cuts, flips, zeroes, repeats or inserts bytes; ``of_tree(obj)`` (a
  parsed JSON / YAML document) drops, renames or retypes a key anywhere in it, nests a
  value in a list, or puts a huge number, NaN, ±inf, an empty string, null, a boolean, a
  negative number or another container in its place. Each returns (what was done, the
  mutant); the same seed gives the same sequence."""

  REPLACEMENTS = (None, True, False, 0, -1, 1e300, -1e300, 10 ** 30, float("nan"),
                  float("inf"), float("-inf"), "", "abc", "1e-3", [], {}, [1, 2], {"a": 1},
                  0.5, 2 ** 31, -(2 ** 63))

  def __init__(self, seed: int):
    import random  # pylint: disable=import-outside-toplevel
    self.rng = random.Random(seed)

  def of_bytes(self, data: bytes):
    rng, n = self.rng, len(data)
    kind = rng.choice(["truncate", "flip", "flip", "zero", "insert", "repeat", "empty",
                       "flip_header"])
    if kind == "empty" or n == 0:
      return "empty", b""
    if kind == "truncate":
      cut = rng.randrange(n)
      return f"truncate at {cut}", data[:cut]
    if kind in ("flip", "flip_header"):
      out = bytearray(data)
      span = min(n, 256) if kind == "flip_header" else n
      where = sorted(rng.randrange(span) for _ in range(rng.randint(1, 8)))
      for i in where:
        out[i] ^= 1 << rng.randrange(8)
      return f"{kind} bits at {where}", bytes(out)
    if kind == "zero":
      start = rng.randrange(n)
      end = min(n, start + rng.randint(1, 4096))
      return f"zero {start}..{end}", data[:start] + bytes(end - start) + data[end:]
    if kind == "insert":
      at = rng.randrange(n)
      junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
      return f"insert {len(junk)} bytes at {at}", data[:at] + junk + data[at:]
    start = rng.randrange(n)
    end = min(n, start + rng.randint(1, 256))
    return f"repeat {start}..{end}", data[:end] + data[start:end] + data[end:]

  def _paths(self, obj, prefix=()):
    """Every (path, value) of a tree (dict keys and list indices)."""
    out = [(prefix, obj)]
    if isinstance(obj, dict):
      for k, v in obj.items():
        out += self._paths(v, prefix + (k,))
    elif isinstance(obj, list):
      for i, v in enumerate(obj):
        out += self._paths(v, prefix + (i,))
    return out

  def of_tree(self, obj):
    import copy  # pylint: disable=import-outside-toplevel
    rng = self.rng
    obj = copy.deepcopy(obj)
    path, value = rng.choice(self._paths(obj))
    kind = rng.choice(["drop", "rename", "retype", "retype", "retype", "nest", "huge",
                       "nan", "empty_string"])
    where = "/".join(map(str, path)) or "(root)"
    if not path:   # the root itself
      new = rng.choice([[obj], "text", None, 3, []])
      return f"root -> {type(new).__name__}", new
    parent = obj
    for key in path[:-1]:
      parent = parent[key]
    key = path[-1]
    if kind == "drop":
      del parent[key]
      return f"drop {where}", obj
    if kind == "rename" and isinstance(parent, dict):
      parent[f"{key}_x" if rng.random() < 0.5 else str(key).upper()] = parent.pop(key)
      return f"rename {where}", obj
    if kind == "nest":
      parent[key] = [value]
      return f"nest {where} in a list", obj
    new = {"huge": 1e308 * rng.choice([1, -1]), "nan": float("nan"),
           "empty_string": ""}.get(kind, rng.choice(self.REPLACEMENTS))
    parent[key] = new
    return f"{where} = {new!r}", obj


@pytest.fixture
def mutations():
  """``mutations(seed)``: a :class:`Mutations` of that seed."""
  return Mutations


class Tally:
  """The outcomes of one reader's mutants, for the fuzz tests: ``run(label, read, check,
  source, time_limit)`` reads a mutant within ``LIMIT_S``, then checks what was read
  (``check`` asserts; what it returns is ignored). A ConfigError from either is a refusal
  and must be one line naming ``source``; anything else (a check's AssertionError too) is
  a failure, kept with the mutation that caused it, so one run lists them all.
  ``successes`` holds (label, what was read)."""

  LIMIT_S = 30     # per mutant: a reader that takes longer on a damaged file hangs

  def __init__(self, name: str):
    self.name, self.counts, self.failures, self.successes = name, collections.Counter(), [], []

  def run(self, label: str, read, check, source: str, time_limit) -> None:
    try:
      with time_limit(self.LIMIT_S, f"{self.name}: {label}"):
        result = read()
        check(result)
    except ConfigError as e:
      if "\n" in str(e) or source not in str(e):
        self.failures.append(f"{label}: not one line naming {source}: {str(e)!r}")
      self.counts["refused in one line"] += 1
      return
    except Exception as e:  # noqa: BLE001 - what the fuzz tests look for
      self.failures.append(f"{label}: {type(e).__name__}: {str(e)[:200]}")
      self.counts["other exception"] += 1
      return
    self.successes.append((label, result))
    self.counts["read"] += 1

  def assert_clean(self, minimum: int) -> None:
    total = sum(self.counts.values())
    print(f"\n{self.name}: {total} mutants: {dict(self.counts)}")
    assert total >= minimum
    assert not self.failures, "\n".join(self.failures[:10])


class Hang(BaseException):
  """A block ran over its time limit (a BaseException: no reader's ``except Exception``
  turns it into an ordinary error)."""


@pytest.fixture
def time_limit():
  """``with time_limit(seconds, what):`` fails the test (:class:`Hang` naming ``what``)
  when the block runs longer: a reader that hangs on a damaged file is a defect."""
  import contextlib  # pylint: disable=import-outside-toplevel
  import signal  # pylint: disable=import-outside-toplevel

  @contextlib.contextmanager
  def limit(seconds: float, what: str):
    def alarm(signum, frame):
      del signum, frame
      raise Hang(f"{what} ran over {seconds} s")
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
      yield
    finally:
      signal.setitimer(signal.ITIMER_REAL, 0)
      signal.signal(signal.SIGALRM, previous)
  return limit
@pytest.fixture(scope="module")
def processes():
  return dict(
      vp=diffusion.make_process(dict(variant="ddpm", schedule="linear", num_timesteps=1000)),
      ve=diffusion.make_process(dict(variant="ncsn", schedule="geometric", num_timesteps=1000,
                                     sigma_min=0.01, sigma_max=50.0)))


@pytest.fixture(scope="module")
def released(tmp_path_factory):
  """name -> path of the decompressed checkpoint (the bytes torch.save wrote)."""
  folder = tmp_path_factory.mktemp("ncsn_releases")
  out = {}
  for xz in sorted((REPO / "tests" / "fixtures" / "ncsn").glob("*.pth.xz")):
    path = folder / xz.name[:-len(".xz")]
    path.write_bytes(lzma.decompress(xz.read_bytes()))
    out[xz.name[:-len(".pth.xz")]] = str(path)
  return out

"""The shape of the package, enforced: import rules, no cycles, registries equal the
README's lists, and plug-ins that need no edit outside their own module."""

import ast
import pathlib
import re
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffusion
from diffusion import evals, samplers
from diffusion.config import SamplingConfig, parse_config
from diffusion.config import checks
from diffusion.families import builders
from diffusion import config as C

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "diffusion"
README = (REPO / "README.md").read_text()


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(REPO).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path):
  """The diffusion modules a file imports, at its top or inside functions (``from a import
  b`` counts a.b when b is a module)."""
  out = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      out.update(a.name for a in node.names if a.name.startswith("diffusion"))
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("diffusion"):
      for a in node.names:
        sub = f"{node.module}.{a.name}"
        known = (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists() or \
            (PACKAGE.parent / sub.replace(".", "/") / "__init__.py").exists()
        out.add(sub if known else node.module)
  return out


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


@pytest.mark.parametrize("floor", ["diffusion.core", "diffusion.samplers", "diffusion.models"])
def test_the_maths_imports_no_config_and_nothing_above_it(floor):
  """core/, samplers/ and models/ take plain arguments: no config, train, io, evals."""
  above = ("diffusion.config", "diffusion.train", "diffusion.io", "diffusion.evals",
           "diffusion.families", "diffusion.data", "diffusion.sweeps", "diffusion.reproduce",
           "diffusion.api")
  bad = {name: sorted(i for i in _imports(path) if i.startswith(above))
         for name, path in MODULES.items() if name.startswith(floor)}
  assert not {k: v for k, v in bad.items() if v}


def test_config_and_io_use_nothing_above_them():
  above = ("diffusion.train", "diffusion.evals", "diffusion.families", "diffusion.sweeps",
           "diffusion.reproduce", "diffusion.api")
  for name, path in MODULES.items():
    if name.startswith(("diffusion.config", "diffusion.io")):
      assert not [i for i in _imports(path) if i.startswith(above)], name


def _find_cycle(graph):
  """An import cycle of ``graph`` (module -> the modules it imports) as [a, b, ..., a], or
  None."""
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph[node]):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        found = visit(nxt)
        if found:
          return found
    stack.pop()
    state[node] = "done"
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def test_no_import_cycles():
  """Imports inside functions count too: deferring one hides a cycle from import time, not
  from the design (optional libraries imported inside functions are not ours: ignored)."""
  graph = {name: {i for i in _imports(path) if i in MODULES} for name, path in MODULES.items()}
  cycle = _find_cycle(graph)
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_sees_imports_inside_functions(tmp_path):
  """The check above would have caught sweeps.runner importing ray_mode inside a function
  while ray_mode imported runner at its top."""
  runner = tmp_path / "runner.py"
  runner.write_text("import os\n\n\ndef run():\n  import ray\n"
                    "  from diffusion.sweeps import ray_mode\n  return ray_mode, os, ray\n")
  ray_mode = tmp_path / "ray_mode.py"
  ray_mode.write_text("from diffusion.sweeps.ledger import Ledger\n"
                      "from diffusion.sweeps.runner import run\n")
  graph = {"diffusion.sweeps.runner": _imports(runner),
           "diffusion.sweeps.ray_mode": _imports(ray_mode), "diffusion.sweeps.ledger": set()}
  assert graph["diffusion.sweeps.runner"] == {"diffusion.sweeps.ray_mode"}
  assert _find_cycle(graph) == ["diffusion.sweeps.ray_mode", "diffusion.sweeps.runner",
                                "diffusion.sweeps.ray_mode"]
  graph["diffusion.sweeps.ray_mode"].discard("diffusion.sweeps.runner")
  assert _find_cycle(graph) is None


def test_one_atomic_write_and_no_private_jax():
  for path in PACKAGE.rglob("*.py"):
    text = path.read_text()
    if path.name != "atomic.py":
      assert "os.replace(tmp" not in text and '+ ".tmp"' not in text, path
    # Only where JAX has no public API (xla_cpu: "have the backends started?"), guarded.
    assert "jax._src" not in text or path.name == "xla_cpu.py", path


def _table_names(header: str):
  """The backticked first cells of the README table whose header row starts with ``header``."""
  lines = README.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith(header))
  names = []
  for line in lines[start + 2:]:
    if not line.startswith("|"):
      break
    names.append(re.match(r"\| `([a-z_0-9]+)`", line).group(1))
  return names


def test_sampler_names_come_from_the_registry_and_match_the_readme():
  assert set(C.SAMPLERS) == set(samplers.SAMPLERS)
  assert sorted(_table_names("| `sampling.method`")) == sorted(samplers.SAMPLERS)


def test_evaluator_names_match_the_config_sections_and_the_readme():
  sections = set(C.DiffusionEvalConfig.field_docs()) | set(C.VAEEvalConfig.field_docs())
  names = {path.split(".")[1] for path in sections}
  assert names == set(evals.EVALUATORS)
  assert sorted(_table_names("| `config.eval` section")) == sorted(evals.EVALUATORS)


def test_network_names_are_the_builders():
  assert tuple(builders.NETWORKS) == C.NETWORKS


def test_a_new_sampler_is_one_module(monkeypatch):
  """A throw-away sampler (plain Euler on the ε-ODE), registered in the one dict, runs
  through the config, the public API and a family's sample_fn with no other edit."""
  from diffusion.samplers.chain import Plan, f32, levels  # the names a sampler module uses

  def make_plan(process, settings):
    _, std = process.host_marginal()
    order = np.arange(process.num_timesteps)[::-1]
    nxt = np.append(std[order][1:], 0.0)
    return Plan(dict(model_t=jnp.asarray(order.astype(np.int32)),
                     dsigma=f32(nxt - std[order])), process, settings, step)

  def step(eps_fn, plan, x0_range, x, row, z):
    del x0_range, z
    return x + row["dsigma"] * eps_fn(x, levels(row, x))   # VE: dx/dσ = ε

  toy = types.ModuleType("toy_euler")
  toy.make_plan, toy.step = make_plan, step
  monkeypatch.setitem(samplers.SAMPLERS, "toy_euler", toy)
  config = parse_config({"diffusion": {"variant": "ncsn", "num_timesteps": 50, "sigma_max": 5.0},
                         "data": {"dataset": "mixture", "mixture_weights": (1.0,),
                                  "mixture_means": ((0.0, 0.0),), "mixture_stds": (1.0,)},
                         "model": {"name": "analytic"},
                         "sampling": {"method": "toy_euler"}})
  family = diffusion.make_family(config)
  x = family.sample_fn(2000)({}, jax.random.PRNGKey(0))
  # The exact ε of N(0, I) data: Euler on the ODE maps N(0, (1 + σ_max²) I) to about N(0, I).
  assert abs(float(jnp.std(x)) - 1.0) < 0.1


def test_a_new_evaluator_is_reached_only_through_the_interface(monkeypatch, tmp_path):
  """A throw-away evaluator under a registered name: make_evaluators builds it, run and
  summary are all the callers use, and sweep summaries learn its maximised metric."""
  calls = []

  class Probe(evals.base.Evaluator):
    name = "bpd"
    MAXIMISED = ("eval/probe",)

    def __init__(self, cfg, family, workdir="", seed=0, output_dir=None):
      super().__init__(cfg, family, workdir, seed, output_dir)

    def run(self, params, step, samples=None):
      calls.append(step)
      self.last = {"probe": 1.5}
      return {"eval/probe": 1.5}

  monkeypatch.setitem(evals.EVALUATORS, "bpd", Probe)
  family = diffusion.make_family({"data": {"dataset": "mixture", "num_channels": 2},
                                  "model": {"name": "mlp", "out_channels": 2}})
  (ev,) = evals.make_evaluators(family, str(tmp_path), ["bpd"])
  assert ev.run({}, 7) == {"eval/probe": 1.5} and calls == [7]
  assert ev.summary().startswith("bpd:") and "eval/probe" in evals.maximised_metrics()


def test_the_config_is_validated_once_at_the_entry_point():
  """Nothing below the entry points calls validate or parse_config on a typed config."""
  callers = [name for name, path in MODULES.items()
             if re.search(r"\bvalidate\(", path.read_text()) and name != "diffusion.config.checks"]
  entry_points = {"diffusion.api", "diffusion.generate", "diffusion.train.loop",
                  "diffusion.train.population",
                  "diffusion.sweeps.runner", "diffusion.pretrained.importer",
                  "diffusion.pretrained.export", "diffusion.reproduce.generic"}
  assert set(callers) <= entry_points, callers
  for floor in ("diffusion.core", "diffusion.samplers", "diffusion.models", "diffusion.evals"):
    for name, path in MODULES.items():
      if name.startswith(floor):
        assert ".parse(" not in path.read_text(), name
  checks.validate({})  # the default config is valid
  assert isinstance(SamplingConfig.parse({"method": "ddim"}), SamplingConfig)


def test_atomic_writes_have_the_usual_file_mode(tmp_path):
  """A file written atomically is readable as open() would make it (not mkstemp's 0600)."""
  import os  # pylint: disable=import-outside-toplevel
  from diffusion.io import atomic  # pylint: disable=import-outside-toplevel
  path = tmp_path / "config.json"
  atomic.write_text(str(path), "{}")
  umask = os.umask(0)
  os.umask(umask)
  assert (path.stat().st_mode & 0o777) == 0o666 & ~umask and path.read_text() == "{}"

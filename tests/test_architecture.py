"""The shape of the package, enforced: import rules, no cycles, registries equal the
tables of the README and docs/, plug-ins that need no edit outside their own module, one home per default,
and a package that installs."""

import ast
import dataclasses
import importlib
import inspect
import pathlib
import re
import subprocess
import sys
import types
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffusion
import diffusion.config.evals
from diffusion import evals, families, models, options, paths, samplers
from diffusion.config import (RUN_CONFIGS, DiffusionEvalConfig, ModelConfig, SamplingConfig,
                              VAEEvalConfig, checks, parse_config)
from tests.conftest import stderr_tail

REPO = pathlib.Path(paths.REPO)
PACKAGE = REPO / "diffusion"
README = (REPO / "README.md").read_text()
# The reference tables that moved out of the README, one topic a page (the README links them).
SAMPLERS_PAGE = (REPO / "docs" / "samplers.md").read_text()
EVALUATORS_PAGE = (REPO / "docs" / "evaluators.md").read_text()


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


def test_the_option_vocabulary_is_on_the_lowest_floor():
  """diffusion/options.py (how plug-ins declare options) imports no project module, so
  samplers/ and models/ can use it without importing the config package above them."""
  assert _imports(PACKAGE / "options.py") == set()


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


# The project's own packages: imported under their own names only.
PROJECT = ("diffusion", "configs", "tests")


def _project_aliases(root: pathlib.Path):
  """(file, line, 'name as alias') of every import of a project module or name under
  another name, in the package, the tests, the configs, the benchmarks, docs/ and the
  two commands."""
  files = [root / "train.py", root / "sample.py"]
  for folder in ("diffusion", "tests", "configs", "benchmarks", "docs"):
    files += (root / folder).rglob("*.py")
  found = []
  for path in sorted(p for p in files if p.is_file()):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        named = [(a.name, a.asname) for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
        named = [(f"{node.module}.{a.name}", a.asname) for a in node.names]
      else:
        continue
      found += [(path.relative_to(root).as_posix(), node.lineno, f"{name} as {alias}")
                for name, alias in named if alias and name.split(".")[0] in PROJECT]
  return found


def test_project_modules_are_imported_under_their_own_names():
  """One name per thing: ``from diffusion.io import workdir``, never ``as runs`` (before
  this rule: workdir as runs x7 and as workdirs, config.checks as config_check x6, optim as
  optimizers, metrics as evaluation, config as C, ...); third-party aliases (jax.numpy as
  jnp, numpy as np, flax.linen as nn) are the libraries' own conventions."""
  assert not _project_aliases(REPO)


def test_the_alias_rule_sees_an_alias_of_a_project_module(tmp_path):
  (tmp_path / "diffusion").mkdir()
  (tmp_path / "train.py").write_text("import jax.numpy as jnp\nimport numpy as np\n")
  (tmp_path / "sample.py").write_text("def f():\n  import diffusion.config.checks as c\n")
  (tmp_path / "diffusion" / "api.py").write_text(
      "from diffusion.io import checkpoints, workdir as runs\nfrom diffusion import cli\n")
  assert _project_aliases(tmp_path) == [
      ("diffusion/api.py", 1, "diffusion.io.workdir as runs"),
      ("sample.py", 2, "diffusion.config.checks as c")]


def test_the_repository_is_found_in_one_module():
  """diffusion/paths.py's REPO is the repository (README.md, configs/, tests/); no other
  module of the package or of tests/ reads ``__file__`` to find it (before this rule three
  package modules computed it: reproduce/common.py, sweeps/ray_mode.py, data/files.py).
  Left out: the scripts that put the repository on sys.path before they can import the
  package (benchmarks/, docs/make_config_reference.py) and tests/fixtures/' generators."""
  assert (REPO / "README.md").is_file() and (REPO / "configs" / "base.py").is_file()
  assert (REPO / "tests" / "test_architecture.py").is_file()
  readers = []
  for path in sorted([*PACKAGE.rglob("*.py"), *(REPO / "tests").rglob("*.py")]):
    name = path.relative_to(REPO).as_posix()
    if name == "diffusion/paths.py" or name.startswith("tests/fixtures/"):
      continue
    tree = ast.parse(path.read_text())
    if any(isinstance(n, ast.Name) and n.id == "__file__" for n in ast.walk(tree)):
      readers.append(name)
  assert not readers, readers


def test_one_atomic_write_and_no_private_jax():
  for path in PACKAGE.rglob("*.py"):
    text = path.read_text()
    if path.name != "atomic.py":
      assert "os.replace(tmp" not in text and '+ ".tmp"' not in text, path
    # Only where JAX has no public API (xla_cpu: "have the backends started?"), guarded.
    assert "jax._src" not in text or path.name == "xla_cpu.py", path


def _table_names(header: str, page: str):
  """The backticked first cells of the table of ``page`` (a Markdown text) whose header row
  starts with ``header``."""
  lines = page.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith(header))
  names = []
  for line in lines[start + 2:]:
    if not line.startswith("|"):
      break
    names.append(re.match(r"\| `([a-z_0-9]+)`", line).group(1))
  return names


def _field(cls, name):
  return next(f for f in dataclasses.fields(cls) if f.name == name)


def test_sampler_names_come_from_the_registry_and_match_the_samplers_page():
  assert _field(SamplingConfig, "method").metadata["choices"] is samplers.SAMPLERS
  assert sorted(_table_names("| `sampling.method`", SAMPLERS_PAGE)) == sorted(samplers.SAMPLERS)
  # The README's Sampling section names them all too, before it links the page.
  listed = README[README.index("The samplers (`sampling.method`:"):]
  listed = listed[:listed.index(")")]
  assert sorted(re.findall(r"`([a-z_0-9]+)`", listed)) == sorted(samplers.SAMPLERS)


def test_evaluator_names_are_one_table_each_name_a_module_with_its_class():
  """config/evals.py's table is the one list: the family sections, the evaluator classes
  and the table of docs/evaluators.md are derived from it or equal it; each name is a module
  diffusion/evals/<name>.py whose EVALUATOR is an Evaluator of that name."""
  table = diffusion.config.evals.EVALUATORS
  sections = set(DiffusionEvalConfig.field_docs()) | set(VAEEvalConfig.field_docs())
  assert {path.split(".")[1] for path in sections} == set(table) == set(evals.EVALUATORS)
  for name, (section, families_) in table.items():
    assert (PACKAGE / "evals" / f"{name}.py").is_file(), name
    cls = importlib.import_module(f"diffusion.evals.{name}").EVALUATOR
    assert issubclass(cls, evals.base.Evaluator) and cls.name == name
    assert section.PATH == f"eval.{name}"
    for run_cls in RUN_CONFIGS.values():
      assert (name in {f.name for f in dataclasses.fields(run_cls().eval)}) == \
          (run_cls().family in families_)
  assert sorted(_table_names("| `config.eval` section", EVALUATORS_PAGE)) == sorted(table)


def _first_cell_names(header: str):
  """Every backticked name in the first cell of each row of the README table ``header``."""
  lines = README.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith(header))
  names = []
  for line in lines[start + 2:]:
    if not line.startswith("|"):
      break
    names += re.findall(r"`([a-z_0-9]+)`", line.split("|")[1])
  return names


def test_network_names_come_from_the_registry_and_match_the_readme():
  assert _field(ModelConfig, "name").metadata["choices"] is models.NETWORKS
  assert sorted(_first_cell_names("| `model.name`")) == sorted(models.NETWORKS)


def test_family_names_are_the_run_configs_and_their_families():
  """Families are keyed by their whole-config class; the names come from those classes."""
  assert set(families.FAMILIES) == set(RUN_CONFIGS.values())
  for name, run_cls in RUN_CONFIGS.items():
    assert run_cls().family == name and parse_config({"family": name}).family == name


def test_plugin_options_are_declared_once_and_make_the_config_sections():
  """Each sampler and network declares the options its entry function takes (defaults from
  the signature: one source); options several read are declared equal; the sampling and
  model sections are those options plus their common fields, with the same defaults."""
  merged, readers = samplers.declared()
  for name, module in samplers.SAMPLERS.items():
    entry = getattr(module, "make_plan", None) or module.sample
    assert module.DESCRIPTION and "\n" not in module.DESCRIPTION, name
    assert options.keyword_defaults(entry) == {k: o.default for k, o in module.OPTIONS.items()}
    for key, option in module.OPTIONS.items():
      assert merged[key] == option and name in readers[key], (name, key)
  fields = {f.name: f.default for f in dataclasses.fields(SamplingConfig)}
  assert fields == {**{k: o.default for k, o in merged.items()},
                    "quantize": "truncate", "batch_size": 256}
  net_options, _ = options.union((n, net.options) for n, net in models.NETWORKS.items())
  for name, network in models.NETWORKS.items():
    assert network.description and set(network.context) <= set(models.network.CONTEXT)
    assert options.keyword_defaults(network.build) == {
        k: o.default for k, o in network.options.items()}, name
  fields = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
  assert {k: fields[k] for k in net_options} == {k: o.default for k, o in net_options.items()}
  assert set(fields) == {"name", "cond", "scale_by_sigma", "rescale_inputs"} | set(net_options)


def test_options_read_by_several_plugins_must_agree():
  """The union refuses two declarations of one option that differ (e.g. a default)."""
  a = options.Option("steps", rule=options.NONNEGATIVE, default=0, kind=int)
  with pytest.raises(TypeError, match="'num_steps' is declared differently by 'x'.*'y'"):
    options.union([("x", {"num_steps": a}),
                   ("y", {"num_steps": dataclasses.replace(a, default=1)})])
  merged, readers = options.union([("x", {"num_steps": a}), ("y", {"num_steps": a})])
  assert merged == {"num_steps": a} and readers == {"num_steps": ("x", "y")}
  with pytest.raises(TypeError, match="keyword-only"):
    options.declare(lambda process, *, eta=0.0: None, num_steps=a)


def test_a_new_sampler_is_one_module(monkeypatch):
  """A throw-away sampler (plain Euler on the ε-ODE), registered in the one dict, runs
  through the config, the public API and a family's sample_fn with no other edit."""
  from diffusion.samplers.chain import Plan, f32, levels  # the names a sampler module uses

  def make_plan(process):
    _, std = process.host_marginal()
    order = np.arange(process.num_timesteps)[::-1]
    nxt = np.append(std[order][1:], 0.0)
    return Plan(dict(model_t=jnp.asarray(order.astype(np.int32)),
                     dsigma=f32(nxt - std[order])), process, step)

  def step(eps_fn, plan, x0_range, x, row, z):
    del x0_range, z
    return x + row["dsigma"] * eps_fn(x, levels(row, x))   # VE: dx/dσ = ε

  toy = types.ModuleType("toy_euler")
  toy.make_plan, toy.step = make_plan, step
  toy.OPTIONS, toy.DESCRIPTION = options.declare(make_plan), "Euler on the ε-ODE"
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
  assert samplers.descriptions()["toy_euler"] == "Euler on the ε-ODE"


def test_a_new_network_is_its_module_and_its_registry_line(monkeypatch):
  """A throw-away network (a zero ε: the data's prior as the model) declared as a
  ``Network``, registered in the one dict, trains' init and samples through the family
  with no other edit; its option comes from the config section's shared ``out_channels``."""
  import flax.linen as nn  # pylint: disable=import-outside-toplevel

  class Zero(nn.Module):
    out_channels: int

    @nn.compact
    def __call__(self, x, cond=None, train=False):
      del cond, train
      w = self.param("w", nn.initializers.ones, ())
      return jnp.zeros(x.shape[:-1] + (self.out_channels,)) * w

  def build(*, out_channels: int = 3):
    return Zero(out_channels)

  network = models.Network("zero eps", build,
                           options.declare(build, out_channels=models.network.OUT_CHANNELS))
  monkeypatch.setitem(models.NETWORKS, "zero_eps", network)
  family = diffusion.make_family({"data": {"dataset": "swiss_roll", "num_channels": 2},
                                  "model": {"name": "zero_eps", "out_channels": 2},
                                  "diffusion": {"num_timesteps": 20},
                                  "sampling": {"method": "ddim"}})
  params = family.init_params(jax.random.PRNGKey(0))
  assert jax.tree.leaves(params)[0].shape == ()
  x = family.sample_fn(8)(params, jax.random.PRNGKey(1))
  assert x.shape == (8, 2) and bool(jnp.all(jnp.isfinite(x)))


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


def _plugin_owners():
  """{plug-in name: the files that are its own}: a sampler's module, a network's module,
  diffusion/evals/<name>.py, a family's module and its config sections' module."""
  def rel(obj):
    return pathlib.Path(inspect.getfile(obj)).resolve().relative_to(REPO).as_posix()
  owners = {name: {rel(module)} for name, module in samplers.SAMPLERS.items()}
  owners.update({name: {rel(net.build)} for name, net in models.NETWORKS.items()})
  owners.update({name: {rel(cls)} for name, cls in models.VAE_NETWORKS.items()})
  owners.update({name: {f"diffusion/evals/{name}.py"}
                 for name in diffusion.config.evals.EVALUATORS})
  for run_cls, family_cls in families.FAMILIES.items():
    owners[run_cls().family] = {rel(run_cls), rel(family_cls)}
  return owners


# The one dict of each kind of plug-in: its lines may name them all.
REGISTRIES = {"diffusion/samplers/__init__.py": {"SAMPLERS"},
              "diffusion/models/__init__.py": {"NETWORKS", "VAE_NETWORKS"},
              "diffusion/config/evals.py": {"EVALUATORS"}}
# Generic code: the package and the two commands. Left out: diffusion/reproduce/ (each
# paper's entries name the sampler, network and evaluator the paper used), diffusion/
# pretrained/ (each weight reader converts one named network), and config/presets.py
# (the papers' choices as plain data, like configs/).
LEFT_OUT = ("diffusion/reproduce/", "diffusion/pretrained/", "diffusion/config/presets.py")
# A plug-in's spelling used for another thing, where that thing lives.
HOMONYMS = {
    ("diffusion/samplers/timesteps.py", "ddim"): "improved-diffusion's 'ddimN' respacing",
    ("diffusion/config/vae.py", "elbo"): "the VAE objective vae.objective='elbo'",
    ("diffusion/families/vae.py", "elbo"): "the VAE objective and its elbo metric",
    ("diffusion/evals/metrics.py", "bpd"): "the result key of bits/dim (eval/bpd)",
    ("diffusion/evals/metrics.py", "fid"): "the result key of FID (eval/fid)",
    ("diffusion/evals/ode_bpd.py", "bpd"): "its result's bits/dim key",
}
def _plugin_literals(root: pathlib.Path):
  """(file, line, name) of every string literal that is exactly a plug-in's name, in the
  generic code under ``root``, outside the plug-in's own files and its registry line
  (docstrings are prose and not counted)."""
  owners = _plugin_owners()
  files_ = sorted(p for p in (root / "diffusion").rglob("*.py"))
  files_ += [root / "train.py", root / "sample.py"]
  found = []
  for path in files_:
    name = path.relative_to(root).as_posix()
    if name.startswith(LEFT_OUT):
      continue
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
      body = getattr(node, "body", None)
      if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
          isinstance(body[0].value, ast.Constant):
        skip.add(id(body[0].value))                                     # a docstring
      targets = (node.targets if isinstance(node, ast.Assign) else
                 [node.target] if isinstance(node, ast.AnnAssign) else [])
      if any(getattr(t, "id", None) in REGISTRIES.get(name, ()) for t in targets):
        skip.update(id(n) for n in ast.walk(node.value))                # a registry line
    for node in ast.walk(tree):
      if (isinstance(node, ast.Constant) and isinstance(node.value, str) and
          node.value in owners and id(node) not in skip and
          name not in owners[node.value] and (name, node.value) not in HOMONYMS):
        found.append((name, node.lineno, node.value))
  return found


def test_no_plugin_name_outside_its_own_module_and_registry():
  """The generic code asks a plug-in (or the family) instead of naming it: no sampler,
  evaluator, family or network name as a string literal outside the plug-in's own
  files, its registry line, and the left-out folders above (configs/ and the README
  are not code). On the main before this rule there were 99 such literals in 12 files (e.g.
  families/diffusion.py 'annealed_langevin', train/loop.py 'analytic', sample.py
  'ddim')."""
  assert not _plugin_literals(REPO)


def test_the_plugin_name_rule_sees_a_name_in_generic_code(tmp_path):
  """The rule finds a family or sampler branch written in generic code, and not the same
  words in a docstring."""
  (tmp_path / "diffusion" / "train").mkdir(parents=True)
  (tmp_path / "train.py").write_text("")
  (tmp_path / "sample.py").write_text('"""ddim"""\nif method == "ddim":\n  pass\n')
  (tmp_path / "diffusion" / "train" / "loop.py").write_text(
      'def f(cfg):\n  """analytic"""\n  return cfg.family == "vae"\n')
  assert sorted(_plugin_literals(tmp_path)) == [("diffusion/train/loop.py", 3, "vae"),
                                                ("sample.py", 2, "ddim")]


def test_the_config_is_validated_once_at_the_entry_point():
  """Nothing below the entry points calls validate or parse_config on a typed config."""
  callers = [name for name, path in MODULES.items()
             if re.search(r"\bvalidate\(", path.read_text()) and name != "diffusion.config.checks"]
  entry_points = {"diffusion.api", "diffusion.generate", "diffusion.train.loop",
                  "diffusion.train.population",
                  "diffusion.sweeps.runner", "diffusion.sweeps.ema",
                  "diffusion.pretrained.importer",
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


def test_no_second_table_of_defaults_in_the_package():
  for path in PACKAGE.rglob("*.py"):
    text = path.read_text()
    assert "_DEFAULTS" not in text, path
    assert "get_field(" not in text, path


def test_processes_are_asked_what_they_are_not_tested():
  pattern = re.compile(r"hasattr\(process|isinstance\(process|variant ==")
  offenders = [str(p) for p in PACKAGE.rglob("*.py") if p.name != "processes.py"
               and pattern.search(p.read_text())]
  assert not offenders
  assert diffusion.make_process({"variant": "ddpm"}).kind == "vp"
  assert diffusion.make_process({"variant": "ncsn"}).kind == "ve"


@pytest.mark.slow
def test_package_builds_a_wheel_with_both_packages(tmp_path):
  res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                        "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
                       capture_output=True, text=True, timeout=300)
  if res.returncode and "No module named" in res.stderr and "setuptools" in res.stderr:
    pytest.skip("setuptools is not installed in this environment")
  assert res.returncode == 0, stderr_tail(res.stderr, 2000)
  wheel = next(tmp_path.glob("diffusion-*.whl"))
  names = zipfile.ZipFile(wheel).namelist()
  assert "diffusion/config/__init__.py" in names and "configs/base.py" in names
  assert "diffusion/models/unet.py" in names and "diffusion/data/sources.py" in names
  # packages.find ships a folder only with its __init__.py: the reproductions need theirs.
  assert "diffusion/reproduce/registry.py" in names
  assert "diffusion/reproduce/papers/ddim.py" in names


def test_tests_are_named_by_what_they_check_not_by_an_issue():
  """No issue number in a test file's names, docstrings or comments: a test says which
  behaviour it holds (the history is in git). Before this rule 29 lines of tests/ cited an
  issue (e.g. ``(issue 30)``, ``issue 33 item 4``)."""
  pattern = re.compile(r"\bissues? ?#?\d+", re.IGNORECASE)
  cited = [f"{path.relative_to(REPO).as_posix()}:{n}"
           for path in sorted((REPO / "tests").rglob("*.py")) if path.name != "test_architecture.py"
           for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
  assert not cited, cited

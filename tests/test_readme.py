"""README.md's quick start, as printed. Its command line, split at ``&&``, is the three steps
a newcomer runs: a venv, the light core's install, the quickstart's training. The whole line
takes minutes and a network (pip downloads about 50 packages; training runs 1,800 steps), so
the test runs the first two steps in their dry forms, without a network: the venv as printed
but without pip in it, and the install as pip's ``--dry-run`` of the same project, which must
resolve to this project with the light core's dependencies and none of the extras the text
says it leaves out. The third step's config and output are checked against the text."""

import json
import pathlib
import re
import shlex
import subprocess
import sys
import tomllib

from configs.ddpm import quickstart
from diffusion.paths import REPO

ROOT = pathlib.Path(REPO)


def quickstart_steps():
  """The quick start's bash block (the first after "## Quickstart"), split at ``&&`` into
  argument lists."""
  readme = (ROOT / "README.md").read_text()
  section = readme[readme.index("## Quickstart"):]
  block = re.search(r"```bash\n(.*?)```", section, re.S).group(1).strip()
  assert "\n" not in block, block            # one line, copied whole
  return [shlex.split(step) for step in block.split("&&")]


def _normalized(requirement: str) -> str:
  """A requirement with its name as pip compares names (PEP 503: lower case, runs of
  -_. as one -)."""
  name, rest = re.match(r"([A-Za-z0-9._-]+)(.*)", requirement.strip()).groups()
  return re.sub(r"[-_.]+", "-", name).lower() + rest.replace(" ", "")


def test_quickstart_is_a_venv_the_light_core_and_the_first_run():
  venv, install, train = quickstart_steps()
  assert venv == ["python3", "-m", "venv", ".venv"]
  assert install == [".venv/bin/pip", "install", "."]
  assert train[:2] == [".venv/bin/python", "train.py"]
  flags = dict(a.split("=", 1) for a in train[2:])
  assert flags == {"--config": "configs/ddpm/quickstart.py", "--workdir": "runs/digits"}
  # The text says it writes runs/digits/samples/step_00001800.png.
  readme = (ROOT / "README.md").read_text()
  assert "`runs/digits/samples/step_00001800.png`" in readme
  assert quickstart.get_config().training.num_train_steps == 1800


def test_quickstart_venv_and_install_dry_forms(tmp_path):
  venv, install, _ = quickstart_steps()
  # 1. The venv as printed, in an empty folder, without pip (the dry form: nothing installed).
  res = subprocess.run([*venv[:-1], "--without-pip", venv[-1]], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
  assert res.returncode == 0, res.stderr
  assert (tmp_path / ".venv" / "bin" / "python").exists()
  # 2. `pip install .` from the repository, dry: resolved offline to this project alone
  #    (--no-deps: its dependencies are read from the report instead of downloaded).
  report = tmp_path / "report.json"
  res = subprocess.run([sys.executable, "-m", "pip", install[1], "--dry-run", "--no-deps",
                        "--no-index", "--no-build-isolation", "--quiet", "--report", str(report),
                        install[2]], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert res.returncode == 0, res.stderr[-3000:]
  (item,) = json.loads(report.read_text())["install"]
  meta = item["metadata"]
  project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
  assert meta["name"] == project["name"] and meta["version"] == project["version"]
  core = sorted(_normalized(r) for r in meta["requires_dist"] if "extra ==" not in r)
  assert core == sorted(_normalized(r) for r in project["dependencies"])
  # "installs the light core — no TensorFlow, Ray or matplotlib"
  names = {re.split(r"[\[=<>!~ ;]", r, maxsplit=1)[0] for r in core}
  assert not names & {"tensorflow", "tensorflow-cpu", "tensorflow-datasets", "ray",
                      "matplotlib"}, names


# ---- after the quick start: the venv's python, the tests, the next steps --------------------


def _section(title: str) -> str:
  """The README's section ``## title``, up to the next ``## `` heading."""
  readme = (ROOT / "README.md").read_text()
  start = readme.index(f"\n## {title}\n")
  end = readme.find("\n## ", start + 1)
  return readme[start:end if end > 0 else None]


def _bash_blocks(text: str):
  return re.findall(r"```bash\n(.*?)```", text, re.S)


def test_quickstart_then_activates_the_venv_and_shows_the_tests_command():
  """Later commands say ``python``: the quick start makes it the venv's. The test command
  is printed whole, as CI runs it."""
  assert _bash_blocks(_section("Quickstart"))[1].strip() == "source .venv/bin/activate"
  assert _bash_blocks(_section("Tests"))[0].strip() == (
      "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && "
      ".venv/bin/python -m pytest -q")


def _defined_flags(source: pathlib.Path) -> set:
  """The absl flags a command's file defines (``flags.DEFINE_x("name", ...)``)."""
  return set(re.findall(r"DEFINE_\w+\(\s*\"(\w+)\"", source.read_text()))


def _command_flags(tokens) -> tuple:
  """(the flags a ``python FILE`` / ``python -m MODULE`` command accepts, the rest of its
  tokens)."""
  from diffusion import evals  # pylint: disable=import-outside-toplevel
  common = _defined_flags(ROOT / "diffusion" / "cli.py") | {"help", "helpfull"}
  if tokens[1] == "-m":
    module = ROOT.joinpath(*tokens[2].split("."))
    source = module / "__main__.py" if module.is_dir() else module.with_suffix(".py")
    assert source.is_file(), tokens
    return _defined_flags(source) | common, tokens[3:]
  script = ROOT / tokens[1]
  assert script.is_file(), tokens
  names = _defined_flags(script) | common
  if tokens[1] == "sample.py":   # one boolean per evaluator shortcut (--bpd, --fid)
    names |= {name for name, e in evals.EVALUATORS.items() if e.SHORTCUT}
  return names, tokens[2:]


def _has_key(config, dotted: str) -> bool:
  node = config
  for part in dotted.split("."):
    if part not in node:
      return False
    node = node[part]
  return True


def _load_config(path: str):
  import importlib.util  # pylint: disable=import-outside-toplevel
  spec = importlib.util.spec_from_file_location("readme_config", ROOT / path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def test_next_steps_block_is_complete_commands_whose_flags_and_keys_exist():
  """Every line of the "Next steps" block is a complete command as printed: its script or
  module exists, every flag is one the command defines, every config file, config key
  (``--config.a.b``, ``--sweep``, ``--search``), extra, reproduction and subcommand exists,
  and every ``--workdir`` it reads was made by the quick start or a line above it."""
  from diffusion.reproduce.registry import BASELINES  # pylint: disable=import-outside-toplevel
  from diffusion.sweeps import grid, spaces  # pylint: disable=import-outside-toplevel
  (block,) = _bash_blocks(_section("Next steps"))
  extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
      "optional-dependencies"]
  made = {"runs/digits"}                     # the quick start's run
  kinds = set()
  for line in block.strip().splitlines():
    for command in " ".join(shlex.split(line, comments=True)).split(" && "):
      tokens = shlex.split(command)
      if tokens[:2] == ["pip", "install"]:
        (target,) = tokens[2:]
        extra = re.fullmatch(r"\.\[(\w+)\]", target).group(1)
        assert extra in extras, extra
        kinds.add("pip")
        continue
      if tokens[0] == "jupyter":
        assert tokens[1] == "notebook" and (ROOT / tokens[2]).is_file(), tokens
        kinds.add("notebook")
        continue
      assert tokens[0] == "python", command
      names, rest = _command_flags(tokens)
      flags, positional = {}, []
      for arg in rest:
        if arg.startswith("--"):
          name, _, value = arg[2:].partition("=")
          flags[name] = value
        else:
          positional.append(arg)
      config = _load_config(flags["config"]) if "config" in flags else None
      for name, value in flags.items():
        if name.startswith("config."):
          assert config is not None and _has_key(config, name[len("config."):]), name
        else:
          assert name in names, (name, command)
      for point in grid.parse_grid(flags["sweep"]) if "sweep" in flags else []:
        assert all(_has_key(config, key) for key in point), point
      for key in spaces.parse_space(flags["search"]) if "search" in flags else {}:
        assert _has_key(config, key), key
      program = tokens[2] if tokens[1] == "-m" else tokens[1]
      kinds.add(program)
      if program == "train.py":
        made.add(flags["workdir"])
      elif program == "sample.py":
        assert flags["workdir"] in made, command
        kinds.add("bpd" if "bpd" in flags else "sample")
      elif program == "diffusion.sweeps":
        assert positional[0] == "summarize" and positional[1] in made, command
      elif program == "diffusion.reproduce":
        assert positional[0] in BASELINES, positional
        assert next(iter(BASELINES[positional[0]].tiers)) == "cpu"   # runs on a CPU
      elif program == "diffusion.pretrained":
        if positional[0] == "export":
          assert flags["workdir"] in made, command
          made.add(flags["out"])
        else:
          assert positional[0] == "import" and positional[1] in made, command
          made.add(flags["workdir"])
      else:
        raise AssertionError(f"a command this test does not know: {command}")
  # The list: sample, bits/dim, a sweep, a search, a reproduction, import/export, the notebook.
  assert {"sample", "bpd", "train.py", "diffusion.sweeps", "diffusion.reproduce",
          "diffusion.pretrained", "notebook"} <= kinds, kinds
  assert "--search=" in block and "--sweep=" in block
  assert {"import", "export"} <= set(re.findall(r"diffusion\.pretrained (\w+)", block))


def test_the_flag_reader_sees_the_commands_flags():
  """The check above reads flags from the source: it finds what the commands define, and
  a flag no command has is not among them."""
  names, _ = _command_flags(["python", "sample.py"])
  assert {"workdir", "sampler", "steps", "num_samples", "bpd", "fid", "eval"} <= names
  names, _ = _command_flags(["python", "-m", "diffusion.pretrained"])
  assert {"workdir", "out", "config", "raw"} <= names and "sampler" not in names
  assert not _has_key(quickstart.get_config(), "training.no_such_field")


def _links(page: pathlib.Path):
  """The relative link targets of a Markdown page (no web addresses)."""
  return [target for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text())
          if not re.match(r"[a-z]+:", target)]


def test_readme_and_docs_links_reach_their_files_and_sections():
  """The README links every reference page of docs/, and every link of the README and the
  docs/ pages reaches a file (or a heading of the README)."""
  readme = (ROOT / "README.md").read_text()
  headings = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-")
              for h in re.findall(r"^#+ (.*)$", readme, re.M)}
  pages = sorted((ROOT / "docs").glob("*.md"))
  linked = set(_links(ROOT / "README.md"))
  for page in pages:
    assert f"docs/{page.name}" in linked, page.name
  for page in [ROOT / "README.md", *pages]:
    for target in _links(page):
      path, _, anchor = target.partition("#")
      if path:
        assert (page.parent / path).exists(), (page.name, target)
      else:
        assert anchor in headings, (page.name, target)


def test_readme_stays_a_first_read():
  """The reference lives in docs/; the README is what a newcomer reads top to bottom, in
  that order."""
  readme = (ROOT / "README.md").read_text()
  assert len(readme.splitlines()) <= 380
  order = ["## Quickstart", "## Tests", "## Next steps", "## Install by machine", "## Configs"]
  assert [readme.index(h) for h in order] == sorted(readme.index(h) for h in order)

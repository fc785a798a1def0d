"""README.md's runnable blocks, as printed. The quick start's line, split at ``&&``, is the
three steps a newcomer runs: a venv, the light core's install, the quickstart's training.
Fast checks: the first two steps in their dry forms (the venv without pip; pip's
``--dry-run`` of the same project, which must resolve to this project with the light core's
dependencies and none of the extras the text says it leaves out), the third step's config
and output against the text, and every command, flag and key of "Next steps". The slow
test runs the quick start, ``source .venv/bin/activate`` and every "Next steps" line with
bash exactly as printed, in a copy of the checkout, the network stood in for by the
packages already installed. The Python API block runs in tests/test_api.py; the Tests
block is CI's own command (.ci/run)."""

import json
import os
import pathlib
import queue
import re
import shlex
import shutil
import signal
import site
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request

import pytest

from configs.ddpm import quickstart
from diffusion.paths import REPO
from diffusion.sweeps.ledger import read_ledger
from tests.conftest import stderr_tail

ROOT = pathlib.Path(REPO)


def quickstart_steps():
  """The quick start's bash block (the first after "## Quickstart"), split at ``&&`` into
  argument lists."""
  block = _bash_blocks(_section("Quickstart"))[0].strip()
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
  assert res.returncode == 0, stderr_tail(res.stderr)
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


# ---- the quick start and the next steps, run as printed ---------------------------------


def _copy_of_the_checkout(dest: pathlib.Path) -> pathlib.Path:
  """The checkout's files as a newcomer clones them (git's tracked files, as they are on
  disk; without git, everything but venvs, runs and caches), so that the commands' runs/,
  exported/ and .venv land in ``dest``."""
  listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True)
  if listed.returncode == 0 and listed.stdout:
    for name in listed.stdout.decode().split("\0"):
      source = ROOT / name
      if name and source.is_file():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest / name)
  else:
    shutil.copytree(ROOT, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "exported", "__pycache__", "*.egg-info", "build"))
  return dest


def _offline_environment(tmp: pathlib.Path) -> dict:
  """What stands in for the network and a person at the screen, and nothing else: pip finds
  every package already installed (this interpreter's site-packages on PYTHONPATH: the
  packages PyPI would send) and is told not to look for more (PIP_NO_INDEX) nor to fetch a
  build backend (PIP_NO_BUILD_ISOLATION=0: pip reads the negated name's "0" as "no
  isolation"); ``python3`` is this interpreter (the same Python as those packages); the
  packages' own commands (``jupyter``) follow the venv's on PATH; the browser Jupyter opens
  is ``true``, and a root user (containers, CI) has Jupyter's ``allow_root`` set, as
  Jupyter asks."""
  shims = tmp / "shims"
  shims.mkdir()
  (shims / "python3").symlink_to(sys.executable)
  jupyter = tmp / "jupyter"
  jupyter.mkdir()
  if os.geteuid() == 0:
    (jupyter / "jupyter_server_config.json").write_text('{"ServerApp": {"allow_root": true}}')
  env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
  env.update(
      PYTHONPATH=os.pathsep.join(site.getsitepackages()), PIP_NO_INDEX="1",
      PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1", BROWSER="true",
      PATH=os.pathsep.join([str(shims), env.get("PATH", ""), os.path.dirname(sys.executable)]),
      JUPYTER_CONFIG_DIR=str(jupyter), JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"),
      JUPYTER_DATA_DIR=str(jupyter / "data"))
  return env


def _run_line(line: str, cwd, env, timeout: float) -> subprocess.CompletedProcess:
  res = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=timeout)
  assert res.returncode == 0 and "Traceback" not in res.stderr, (line, stderr_tail(res.stderr))
  return res


def _lines_of(stream) -> "queue.Queue":
  """The lines ``stream`` prints, put on a queue by a reader thread (None at its end), so
  that a wait for the next line can time out: a server that hangs without printing fails
  the test at its deadline instead of stalling it."""
  lines: "queue.Queue" = queue.Queue()

  def read():
    for text in iter(stream.readline, ""):
      lines.put(text)
    lines.put(None)
  threading.Thread(target=read, daemon=True).start()
  return lines


def _open_notebook_as_printed(line: str, cwd, env, notebook: str) -> None:
  """Runs the notebook line (it serves until stopped), waits for the server's address, asks
  the server for the notebook the line names (under the folder it serves: the notebook's
  own), then stops the server."""
  proc = subprocess.Popen(["bash", "-c", line], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True)
  lines, root, address = [], None, None
  try:
    deadline = time.time() + 300
    printed = _lines_of(proc.stdout)
    while address is None:
      try:
        text = printed.get(timeout=max(0.0, deadline - time.time()))
      except queue.Empty:   # the deadline passed without the address
        break
      if text is None:      # the server ended
        break
      lines.append(text)
      root = root or re.search(r"Serving notebooks from local directory: (.+)$", text.strip())
      address = re.search(r"(http://127\.0\.0\.1:\d+)/\w*\?token=(\w+)", text)
    assert root and address, "".join(lines)[-3000:]
    served_path = os.path.relpath(os.path.join(cwd, notebook), root.group(1))
    url = f"{address.group(1)}/api/contents/{served_path}?token={address.group(2)}"
    while True:   # the address is printed just before the server listens
      try:
        with urllib.request.urlopen(url, timeout=60) as reply:
          served = json.load(reply)
        break
      except urllib.error.URLError as e:
        if not isinstance(e.reason, ConnectionRefusedError) or time.time() > deadline:
          raise
        time.sleep(0.5)
    assert served["type"] == "notebook" and served["content"]["cells"], served["name"]
  finally:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
      proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, signal.SIGKILL)
      proc.wait()


@pytest.mark.slow
def test_quickstart_and_next_steps_run_as_printed(tmp_path):
  """The Quickstart's line, its ``source .venv/bin/activate`` and every line of "Next steps",
  each run by bash exactly as printed, in order, in a copy of the checkout, with the network
  and the screen stood in for (``_offline_environment``). The notebook line serves the
  notebook it names (nbclient runs the notebook itself: tests/test_walkthrough.py). What
  each line's comment promises is checked on disk. About 4 minutes of the quick start's
  training and 3 of the next steps on 2 cores."""
  repo = _copy_of_the_checkout(tmp_path / "checkout")
  env = _offline_environment(tmp_path)
  quick, activate = (b.strip() for b in _bash_blocks(_section("Quickstart"))[:2])
  _run_line(quick, repo, env, timeout=1800)
  assert (repo / "runs/digits/samples/step_00001800.png").is_file()
  assert (repo / ".venv/bin/python").exists()
  (block,) = _bash_blocks(_section("Next steps"))
  lines = block.strip().splitlines()
  assert len(lines) >= 8, lines
  for line in lines:
    if "jupyter notebook" in line:
      notebook = re.search(r"jupyter notebook (\S+)", line).group(1)
      _open_notebook_as_printed(f"{activate}\n{line}", repo, env, notebook)
    else:
      _run_line(f"{activate}\n{line}", repo, env, timeout=1800)
  # What the comments promise, on disk.
  folders = sorted(p.name for p in (repo / "runs/digits").iterdir() if p.name.startswith(
      ("samples_", "eval_")))
  ddim = [f for f in folders if "ddim_s50" in f]                      # another sampler,
  assert ddim and (repo / "runs/digits" / ddim[0] / "meta.json").is_file(), folders  # meta.json
  assert any(f.startswith("eval_") for f in folders), folders          # bits/dim, no samples
  assert len(read_ledger(str(repo / "runs/grid"))["points"]) == 6    # a grid of 6 runs
  assert len(read_ledger(str(repo / "runs/search"))["points"]) == 8  # --trials=8
  assert (repo / "runs/grid/summary.md").is_file()
  assert (repo / "runs/ncsn_fig3_exact/results.json").is_file()
  assert (repo / "exported/digits/config.json").is_file()
  assert (repo / "runs/digits_reimported/checkpoints").is_dir()

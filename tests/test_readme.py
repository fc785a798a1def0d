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


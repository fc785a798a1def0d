"""diffusion/extras.py, the light core: optional packages are imported only where needed,
and a missing one is one line naming the extra to install."""

import subprocess
import sys

import pytest

from diffusion import extras
from diffusion.errors import ConfigError
from diffusion.paths import REPO
from tests.conftest import stderr_tail



@pytest.mark.parametrize("module,extra", [("tensorflow_datasets", "tfds"), ("ray", "ray"),
                                          ("matplotlib", "plots"), ("optuna", "sweeps")])
def test_missing_optional_package_names_its_extra(monkeypatch, module, extra):
  monkeypatch.setitem(sys.modules, module, None)   # import raises ImportError
  with pytest.raises(ConfigError, match=rf"pip install '\.\[{extra}\]'"):
    extras.require(module)


def test_core_entry_points_import_without_optional_packages():
  """train.py and sample.py (and the package) load with tensorflow_datasets, ray, optuna
  and matplotlib made unimportable, as in a `pip install .` venv."""
  code = """
import sys
for m in ("tensorflow", "tensorflow_datasets", "ray", "optuna", "matplotlib", "wandb"):
    sys.modules[m] = None
import runpy
import diffusion, diffusion.data, diffusion.sweeps, diffusion.evals
runpy.run_path(sys.argv[1], run_name="not_main")
print("core ok")
"""
  for script in ("train.py", "sample.py"):   # one process each: both define absl flags
    res = subprocess.run([sys.executable, "-c", code, script], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, stderr_tail(res.stderr)
    assert "core ok" in res.stdout

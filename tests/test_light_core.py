"""The light core (issue 23): optional packages are imported only where needed, and a
missing one is one line naming the extra to install."""

import subprocess
import sys

import pytest

from diffusion import extras
from diffusion.errors import ConfigError
from tests.test_cli import REPO


@pytest.mark.parametrize("module,extra", [("tensorflow_datasets", "tfds"), ("ray", "ray"),
                                          ("matplotlib", "plots")])
def test_missing_optional_package_names_its_extra(monkeypatch, module, extra):
  monkeypatch.setitem(sys.modules, module, None)   # import raises ImportError
  with pytest.raises(ConfigError, match=rf"pip install '\.\[{extra}\]'"):
    extras.require(module)


def test_core_entry_points_import_without_optional_packages():
  """train.py and sample.py (and the package) load with tensorflow_datasets, ray and
  matplotlib made unimportable, as in a `pip install .` venv."""
  code = """
import sys
for m in ("tensorflow", "tensorflow_datasets", "ray", "matplotlib", "wandb"):
    sys.modules[m] = None
import runpy
import diffusion, diffusion.data, diffusion.sweeps, diffusion.evals
runpy.run_path(sys.argv[1], run_name="not_main")
print("core ok")
"""
  for script in ("train.py", "sample.py"):   # one process each: both define absl flags
    res = subprocess.run([sys.executable, "-c", code, script], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "core ok" in res.stdout


def test_data_list_without_tfds_says_every_datasets_readiness(tmp_path):
  """`data list` in the light core (tfds not importable): a ready column for every row
  (built-in digits and generated toys ready; a prepared folder found; the others say the
  command that prepares them)."""
  (tmp_path / "mnist" / "3.0.1").mkdir(parents=True)
  (tmp_path / "mnist" / "3.0.1" / "dataset_info.json").write_text("{}")
  code = ("import runpy, sys; sys.modules['tensorflow_datasets'] = None\n"
          f"sys.argv = ['python -m diffusion.data', 'list', '--data_dir={tmp_path}']\n"
          "runpy.run_module('diffusion.data', run_name='__main__', alter_sys=True)")
  res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
  assert res.returncode == 0, res.stderr[-3000:]
  assert "WARNING" not in res.stderr
  rows = {line.split()[0]: line for line in res.stdout.splitlines()[1:]}
  assert len(rows) == 14
  assert rows["digits"].endswith("yes (built in: scikit-learn)")
  assert rows["mnist"].endswith(" yes")
  assert rows["fashion_mnist"].endswith("no: prepare fashion_mnist --manual_dir DIR")
  assert rows["mixture"].endswith("yes (generated)")
  assert all(len(line) > 70 for line in rows.values())   # nothing left blank

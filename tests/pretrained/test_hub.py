"""diffusion/pretrained/hub.py: released weights by their Hugging Face id, read offline from
a hub cache laid out as the hub's client lays it out, filled from the test fixture."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import diffusion
from diffusion.paths import REPO
from diffusion.pretrained import import_weights

from tests.conftest import stderr_tail
from tests.pretrained.test_importer import TINY, one_line, params_of, tiny_config

HUB_ID = "google/ddpm-cifar10-32"


def _hub_cache(root, files_from=TINY):
  """A Hugging Face hub cache holding ``HUB_ID`` as the hub's client lays it out:
  models--owner--name/refs/main (the revision) and snapshots/<revision>/<files>; here the
  test fixture's files (a 16 px network)."""
  revision = "0123456789abcdef0123456789abcdef01234567"
  repo = root / ("models--" + HUB_ID.replace("/", "--"))
  (repo / "refs").mkdir(parents=True)
  (repo / "refs" / "main").write_text(revision)
  shutil.copytree(files_from, repo / "snapshots" / revision)
  return root


def test_import_by_hub_id_offline_from_the_cache(tmp_path):
  """HF_HUB_OFFLINE=1 with a cache holding the release: `import google/ddpm-cifar10-32`
  writes the same run as importing the fixture folder; an empty cache is one line saying
  what to download and where to put it."""
  pytest.importorskip("huggingface_hub")
  env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(_hub_cache(tmp_path / "cache")))
  by_id, direct = str(tmp_path / "by_id"), str(tmp_path / "direct")
  res = subprocess.run([sys.executable, "-m", "diffusion.pretrained", "import", HUB_ID,
                        f"--workdir={by_id}", "--config=configs/ddpm/cifar10.py",
                        "--config.data.image_size=16"], cwd=REPO, capture_output=True,
                       text=True, timeout=600, env=env)
  assert res.returncode == 0, stderr_tail(res.stderr, 2000)
  assert res.stdout.startswith(f"{HUB_ID}: getting config.json and the weights from its cache")
  assert f"imported {HUB_ID} (" in res.stdout and "these weights twice" in res.stdout
  import_weights(TINY, direct, config=tiny_config())
  mine, theirs = params_of(by_id), params_of(direct)
  assert mine.keys() == theirs.keys()
  for k in mine:
    np.testing.assert_array_equal(mine[k], theirs[k])
  env["HF_HUB_CACHE"] = str(tmp_path / "empty")
  res = subprocess.run([sys.executable, "-m", "diffusion.pretrained", "import", HUB_ID,
                        f"--workdir={tmp_path / 'none'}"], cwd=REPO, capture_output=True,
                       text=True, timeout=600, env=env)
  assert res.returncode == 2
  (line,) = res.stderr.strip().splitlines()
  assert line.startswith(f"error: {HUB_ID}: could not get it from the Hugging Face hub nor "
                         "its cache") and f"https://huggingface.co/{HUB_ID}" in line
  assert "python -m diffusion.pretrained import weights/ddpm-cifar10-32 --workdir=DIR" in line
  assert not (tmp_path / "none").exists()


def test_hub_id_without_the_hub_package_names_the_extra(monkeypatch):
  from diffusion.pretrained import hub
  monkeypatch.setitem(sys.modules, "huggingface_hub", None)
  assert hub.is_hub_id(HUB_ID) and not hub.is_hub_id(TINY) and not hub.is_hub_id("a/b/c")
  with pytest.raises(diffusion.ConfigError, match=r"pip install '\.\[hub\]'.*https://"
                     r"huggingface\.co/google/ddpm-cifar10-32") as e:
    hub.fetch(HUB_ID)
  one_line(e)

"""python -m diffusion.pretrained: import, sample and export as a user runs them, and
one-line errors with status 2."""

import glob
import os
import pickle
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from diffusion.pretrained import diffusers
from diffusion.paths import REPO

from tests.io.test_torch_pickle import _RunsACommand
from tests.models.test_refinenet import FIXTURES
from tests.pretrained.test_importer import _copy_fixture, _edit_config, TINY, TINY_OLD_BIN



def cli(*args):
  return subprocess.run([sys.executable, "-m", "diffusion.pretrained", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_cli_import_sample_export(tmp_path):
  workdir, out = str(tmp_path / "run"), str(tmp_path / "exported")
  res = cli("import", TINY_OLD_BIN, f"--workdir={workdir}", "--config=configs/ddpm/cifar10.py",
            "--config.data.image_size=16")
  assert res.returncode == 0, res.stderr[-2000:]
  assert "285,667 parameters" in res.stdout and "attention names query" in res.stdout
  assert "from configs/ddpm/cifar10.py" in res.stdout
  res = subprocess.run([sys.executable, os.path.join(REPO, "sample.py"), f"--workdir={workdir}",
                        "--num_samples=2", "--sampler=ddim", "--steps=2", "--progress=false"],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
  assert res.returncode == 0, res.stderr[-2000:]
  (folder,) = glob.glob(os.path.join(workdir, "samples_0_ddim*"))   # named by sampler, steps, seed
  samples = np.load(os.path.join(folder, "samples.npz"))["arr_0"]
  assert samples.shape == (2, 16, 16, 3) and samples.dtype == np.uint8
  res = cli("export", f"--workdir={workdir}", f"--out={out}")
  assert res.returncode == 0, res.stderr[-2000:]
  assert os.path.isfile(os.path.join(out, diffusers.SAFETENSORS_NAME))


@pytest.mark.slow
def test_cli_errors_are_one_line_with_status_2(tmp_path):
  evil = tmp_path / "evil"
  evil.mkdir()
  shutil.copy(os.path.join(TINY, "config.json"), evil)
  marker = tmp_path / "it_ran"
  with zipfile.ZipFile(evil / diffusers.PICKLE_NAME, "w") as zf:
    zf.writestr("archive/data.pkl", pickle.dumps(_RunsACommand(f"touch {marker}"), protocol=2))
  bad = _copy_fixture(tmp_path)
  _edit_config(bad, downsample_padding=1)
  cases = [
      (("import", str(evil), f"--workdir={tmp_path / 'a'}", "--config=configs/ddpm/cifar10.py",
        "--config.data.image_size=16"), "refusing to load the global"),
      (("import", str(bad), f"--workdir={tmp_path / 'b'}", "--config=configs/ddpm/cifar10.py",
        "--config.data.image_size=16"), "downsample_padding=1 is not this network"),
      (("import", str(tmp_path / "nothing"), f"--workdir={tmp_path / 'c'}"),
       "no such file or folder"),
      (("convert", TINY, f"--workdir={tmp_path / 'd'}"), "'convert' is not a command"),
      (("export", f"--workdir={tmp_path / 'e'}"), "export needs --out=OUT"),
  ]
  for args, message in cases:
    res = cli(*args)
    assert res.returncode == 2, (args, res.stderr[-2000:])
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], \
        (args, res.stderr)
  assert not marker.exists()
  assert sorted(os.listdir(tmp_path)) == ["evil", "src"]


def test_cli_reads_the_release_config_yml_beside_the_checkpoint(released, tmp_path):
  """No --config: the release's config.yml (python tags read as data) names the config;
  here it is CIFAR-10 NCSNv2 at full size, whose ladder and width differ: one line, exit 2."""
  import shutil, subprocess, sys  # pylint: disable=import-outside-toplevel,multiple-imports
  folder = tmp_path / "release"
  folder.mkdir()
  shutil.copy(released["ncsnv2"], folder / "checkpoint.pth")
  shutil.copy(FIXTURES / "ncsnv2_config.yml", folder / "config.yml")
  res = subprocess.run([sys.executable, "-m", "diffusion.pretrained", "import",
                        str(folder / "checkpoint.pth"), f"--workdir={tmp_path / 'w'}"],
                       capture_output=True, text=True, timeout=300,
                       cwd=REPO)
  assert res.returncode == 2, res.stderr
  lines = [line for line in res.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("error:") and "model.ngf" in lines[0]
  assert not (tmp_path / "w").exists()

"""python -m diffusion.data: prepare (offline, on the shared MNIST files when present),
pack and list, and one-line errors."""

import json
import os
import subprocess
import sys
import re

import numpy as np
import pytest
from PIL import Image

from tests.conftest import stderr_tail
from tests.test_cli import command, one_error

from diffusion.paths import REPO



def test_data_command_line(tmp_path):
  res = command("diffusion.data", "prepare", "digits", "--data_dir", str(tmp_path))
  assert res.returncode == 0 and "digits: nothing to prepare" in res.stdout, \
      stderr_tail(res.stderr, 2000)
  assert one_error(command("diffusion.data")).startswith(
      "error: no command given; choose prepare, pack or list. usage: python -m diffusion.data "
      "prepare NAME | pack FOLDER OUT.npz --image_size N | list")
  assert one_error(command("diffusion.data", "prepare")) == (
      "error: prepare takes NAME; got none. usage: python -m diffusion.data prepare NAME "
      "[--manual_dir DIR] [--data_dir DIR]")
  assert one_error(command("diffusion.data", "prepare", "mnist", "--limit=3")).startswith(
      "error: --limit: not a flag of prepare.")
  assert one_error(command("diffusion.data", "pack", str(tmp_path), "out.npz")).startswith(
      "error: pack needs --image_size N")
  folder = tmp_path / "images"
  folder.mkdir()
  Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(folder / "a.png")
  res = command("diffusion.data", "pack", str(folder), str(tmp_path / "out.npz"),
                "--image_size", "8", "--grayscale")
  assert res.returncode == 0, stderr_tail(res.stderr, 2000)
  with np.load(tmp_path / "out.npz") as f:
    assert f["images"].shape == (1, 8, 8, 1)


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
  assert res.returncode == 0, stderr_tail(res.stderr)
  assert "WARNING" not in res.stderr
  rows = {line.split()[0]: line for line in res.stdout.splitlines()[1:]}
  assert len(rows) == 14
  assert rows["digits"].endswith("yes (built in: scikit-learn)")
  assert rows["mnist"].endswith(" yes")
  assert rows["fashion_mnist"].endswith("no: prepare fashion_mnist --manual_dir DIR")
  assert rows["mixture"].endswith("yes (generated)")
  assert all(len(line) > 70 for line in rows.values())   # nothing left blank


# ---- offline prepare on the shared MNIST files (a real tfds build) --------------------------


@pytest.mark.slow
@pytest.mark.needs_shared_data
def test_prepare_mnist_offline(shared_data, tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, "-m", "diffusion.data", "prepare", "mnist",
       "--manual_dir", str(shared_data / "mnist"), "--data_dir", str(tmp_path)],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, stderr_tail(proc.stderr, 2000)
  # Its own two lines, nothing of tfds or TensorFlow (their prints, bars and C++ logs were
  # about 100 lines): what it reads and where it writes, then where it is and its sizes.
  lines = proc.stdout.splitlines()
  assert len(lines) == 2 and not proc.stderr.strip(), (proc.stdout, proc.stderr)
  assert lines[0] == (f"mnist: preparing from the files in --manual_dir={shared_data / 'mnist'} "
                      f"(the network is off); tfds builds array_record files under {tmp_path}")
  assert re.fullmatch(rf"mnist: prepared at {re.escape(str(tmp_path / 'mnist' / '3.0.1'))} "
                      r"\([\d.]+ s\): train 60,000, test 10,000 examples\.", lines[1]), lines[1]
  assert sorted(p.name for p in (tmp_path / "mnist" / "3.0.1").glob("*.array_record*")) == [
      "mnist-test.array_record-00000-of-00001", "mnist-train.array_record-00000-of-00001"]
  assert not (tmp_path / "downloads").exists()    # extraction went to a temporary dir
  # Read it back in a fresh process: no TensorFlow and no tfds (the light core), reference
  # statistics (docs/checkable_values.md item 32a).
  code = f"""
import json, sys
sys.modules['tensorflow_datasets'] = None   # the light core: no tfds installed
import numpy as np
from diffusion import data
from diffusion.config import DataConfig
import ml_collections
cfg = ml_collections.ConfigDict(dict(DataConfig().to_dict(), dataset='mnist', image_size=28,
                                     num_channels=1, tfds_data_dir={str(tmp_path)!r}))
tr = data.make_source(cfg).arrays['images']
te = data.make_source(cfg, 'test').arrays['images']
x = tr.astype(np.float64) / 255
print(json.dumps(dict(train=tr.shape, test=te.shape, mean=x.mean(), std=x.std(),
                      zeros=float((tr == 0).mean()), tf='tensorflow' in sys.modules)))
"""
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, stderr_tail(out.stderr, 2000)
  stats = json.loads(out.stdout.strip().splitlines()[-1])
  assert stats["train"] == [60000, 28, 28, 1] and stats["test"] == [10000, 28, 28, 1]
  assert abs(stats["mean"] - 0.1306605) < 1e-6 and abs(stats["std"] - 0.3081078) < 1e-6
  assert abs(stats["zeros"] - 0.80880) < 5e-5
  assert stats["tf"] is False
  # Preparing again is a no-op; a folder without the files fails at once, offline.
  empty = tmp_path / "empty"
  empty.mkdir()
  proc = subprocess.run(
      [sys.executable, "-m", "diffusion.data", "prepare", "mnist", "--manual_dir", str(empty),
       "--data_dir", str(tmp_path / "other")],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
  assert proc.returncode == 2 and "lacks train-images-idx3-ubyte.gz" in proc.stderr

"""Fuzz tests of every reader of released weights and their configs.

Each test takes a valid fixture (tests/fixtures/), applies a few hundred seeded
mutations (``Mutations`` in tests/conftest.py: cut, flipped, zeroed or inserted bytes;
dropped, renamed or retyped keys, values nested in lists, huge numbers, NaN, empty
strings) and runs the reader the import runs on it, in-process. Every outcome must be
a success whose result a run can use (checked: shapes, finiteness, a valid config; the
first successes are imported whole and read back with ``diffusion.load``) or one
WeightsError line naming the file; never another exception (a traceback on the command
line), never a hang (a time limit per mutant). The counts are printed (``-s``).
"""

import io
import json
import lzma
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import yaml

import diffusion
from diffusion import paths
from configs.ddpm import cifar10
from diffusion.config import checks
from diffusion.pretrained import ddpm_tf, diffusers, importer, ncsn_torch
from diffusion.pretrained.network import WeightsError
from tests.conftest import Tally, stderr_tail

REPO = pathlib.Path(paths.REPO)
FIXTURES = REPO / "tests" / "fixtures"
TINY = FIXTURES / "diffusers" / "tiny"
TINY_BIN = FIXTURES / "diffusers" / "tiny_old_bin"
# A DDPM scheduler_config.json as diffusers writes it for google/ddpm-cifar10-32.
SCHEDULER = {"_class_name": "DDPMScheduler", "_diffusers_version": "0.42.1",
             "beta_end": 0.02, "beta_schedule": "linear", "beta_start": 0.0001,
             "clip_sample": True, "num_train_timesteps": 1000, "prediction_type": "epsilon",
             "trained_betas": None, "variance_type": "fixed_large"}


def tiny_config():
  """The CIFAR-10 config at the fixtures' 16 px."""
  config = cifar10.get_config()
  config.data.image_size = 16
  return config


def _finite_params(leaves, shapes):
  assert set(leaves) == set(shapes)
  for path, value in leaves.items():
    assert value.shape == tuple(shapes[path]) and np.isfinite(value).all(), path


@pytest.fixture(scope="module")
def tiny_release():
  """The fixture's typed config, parameter shapes and levels (computed once)."""
  spec = diffusers.spec_from_config(diffusers.read_config(str(TINY)), "config.json")
  cfg = importer.release_config(tiny_config(), spec, str(TINY))
  return cfg, importer._shapes(cfg), spec.num_levels  # pylint: disable=protected-access


def test_diffusers_config_json(tmp_path, mutations, time_limit, tiny_release):
  """config.json: 400 mutations of its fields, read as the import reads it (the spec,
  then the config it implies); the first successes imported whole and loaded."""
  original = json.loads((TINY / "config.json").read_text())
  path = tmp_path / "config.json"
  tally, m, mutants = Tally("diffusers config.json"), mutations(30), {}
  for _ in range(400):
    label, mutant = m.of_tree(original)
    mutants[label] = mutant
    path.write_text(json.dumps(mutant))

    def read():
      spec = diffusers.spec_from_config(diffusers.read_config(str(tmp_path)), str(path))
      return importer.release_config(tiny_config(), spec, str(path))
    tally.run(label, read, checks.validate, str(path), time_limit)
  tally.assert_clean(400)
  # A success is a usable run: the first two of different networks imported whole and
  # loaded (or refused in one line when the weights do not fit what the file now says).
  distinct = {json.dumps(cfg.model.to_dict(), sort_keys=True, default=str): label
              for label, cfg in tally.successes}
  assert len(distinct) >= 2
  for i, label in enumerate(list(distinct.values())[:2]):
    src = tmp_path / f"src{i}"
    shutil.copytree(TINY, src)
    (src / "config.json").write_text(json.dumps(mutants[label]))
    _import_and_load(src, tmp_path / f"run{i}", time_limit)


def _import_and_load(src, workdir, time_limit):
  """Imports ``src`` and reads the run back with diffusion.load (ε finite); a refusal is
  one line, and leaves no folder."""
  with time_limit(300, f"import of {src}"):
    try:
      importer.import_weights(str(src), str(workdir), config=tiny_config())
    except WeightsError as e:
      assert "\n" not in str(e) and not os.path.exists(workdir)
      return
    run = diffusion.load(str(workdir))
    x = np.zeros((1, *run.family.example_shape), np.float32)
    assert np.isfinite(np.asarray(run.eps(x, 3))).all()


def test_diffusers_scheduler_config(tmp_path, mutations, time_limit, tiny_release):
  """scheduler_config.json: 400 mutations of its fields and 100 of its bytes."""
  cfg = tiny_release[0]
  path = tmp_path / "scheduler_config.json"
  tally, m = Tally("scheduler_config.json"), mutations(31)
  for i in range(500):
    if i < 400:
      label, mutant = m.of_tree(SCHEDULER)
      path.write_text(json.dumps(mutant))
    else:
      label, data = m.of_bytes(json.dumps(SCHEDULER).encode())
      path.write_bytes(data)

    def read():
      found, sched = diffusers.read_scheduler(str(tmp_path))
      assert found == str(path)
      with importer.untrusted.reading(found, "scheduler config", WeightsError):
        return importer.check_scheduler(found, sched, cfg)
    tally.run(label, read, _one_line_notes, str(path), time_limit)
  tally.assert_clean(500)


def _one_line_notes(notes) -> None:
  assert all(isinstance(n, str) and "\n" not in n for n in notes), notes


@pytest.mark.parametrize("folder, seed", [(TINY, 32), (TINY_BIN, 33)],
                         ids=["safetensors", "torch_pickle"])
def test_diffusers_weights(tmp_path, mutations, time_limit, tiny_release, folder, seed):
  """The weights file (safetensors; the torch pickle, a zip): 200 byte mutations each,
  half of them in its structure: the first 4 KiB of a safetensors file (the header), the
  object pickle of a torch file (inside a valid zip)."""
  _, shapes, num_levels = tiny_release
  name = diffusers.weights_file(str(folder))
  original = pathlib.Path(name).read_bytes()
  path = tmp_path / os.path.basename(name)
  pkl = None
  if zipfile.is_zipfile(name):
    with zipfile.ZipFile(name) as z:
      pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
      pickled = z.read(pkl)
  tally, m = Tally(os.path.basename(name)), mutations(seed)
  for i in range(200):
    if i % 2 and pkl:
      label, inner = m.of_bytes(pickled)
      label, data = f"data.pkl: {label}", _rezip(original, pkl, inner)
    elif i % 2:
      label, head = m.of_bytes(original[:4096])
      label, data = f"head: {label}", head + original[4096:]
    else:
      label, data = m.of_bytes(original)
    path.write_bytes(data)
    tally.run(label, lambda: importer.read_diffusers_weights(str(path), shapes, num_levels),
              lambda out: _finite_params(out[0], shapes), str(path), time_limit)
  tally.assert_clean(200)


def _ncsn_checkpoint(tmp_path) -> pathlib.Path:
  path = tmp_path / "ncsnv2.pth"
  path.write_bytes(lzma.decompress((FIXTURES / "ncsn" / "ncsnv2.pth.xz").read_bytes()))
  return path


def _rezip(original: bytes, member: str, data: bytes) -> bytes:
  """The zip ``original`` with ``member``'s bytes replaced (a valid zip: the damage is
  in what torch's format holds, not in the zip's checksums)."""
  out = io.BytesIO()
  with zipfile.ZipFile(io.BytesIO(original)) as src, \
      zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
    for info in src.infolist():
      dst.writestr(info, data if info.filename == member else src.read(info.filename))
  return out.getvalue()


def test_ncsn_checkpoint(tmp_path, mutations, time_limit):
  """An NCSNv2 release (torch's zip): 100 mutations of the file's bytes, 150 of its
  data.pkl (in a valid zip) and 50 of a tensor's bytes, read as the import reads it."""
  original = _ncsn_checkpoint(tmp_path).read_bytes()
  with zipfile.ZipFile(io.BytesIO(original)) as z:
    pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
    storage = next(n for n in z.namelist() if "/data/" in n)
    members = {pkl: z.read(pkl), storage: z.read(storage)}
  path = tmp_path / "checkpoint.pth"
  tally, m = Tally("NCSN checkpoint.pth"), mutations(34)
  for i in range(300):
    if i < 100:
      label, data = m.of_bytes(original)
    else:
      member = pkl if i < 250 else storage
      label, inner = m.of_bytes(members[member])
      label, data = f"{os.path.basename(member)}: {label}", _rezip(original, member, inner)
    path.write_bytes(data)

    def check(out):
      params, _, meta = out
      assert meta["architecture"] == "ncsnv2"
      assert all(np.isfinite(v).all() for v in jax_leaves(params))
    tally.run(label, lambda: _read_ncsn(path), check, str(path), time_limit)
  tally.assert_clean(300)


def jax_leaves(tree):
  if isinstance(tree, dict):
    for v in tree.values():
      yield from jax_leaves(v)
  else:
    yield np.asarray(tree)


def _read_ncsn(path):
  with importer.untrusted.reading(str(path), "NCSN/NCSNv2 checkpoint", WeightsError):
    return ncsn_torch.import_ncsn_checkpoint(str(path))


def test_ncsn_release_config_yml(tmp_path, mutations, time_limit):
  """The release's config.yml: 300 mutations of its fields (dumped as YAML, python tags
  and all) and 100 of its bytes, read as the import reads it (no --config)."""
  original_text = (FIXTURES / "ncsn" / "ncsnv2_config.yml").read_text()
  original = ncsn_torch.read_release_config(str(FIXTURES / "ncsn" / "ncsnv2_config.yml"))
  src = tmp_path / "checkpoint.pth"
  src.write_bytes(b"")     # never read: the config is resolved first here
  yml = tmp_path / "config.yml"
  tally, m = Tally("release config.yml"), mutations(35)
  for i in range(400):
    if i < 300:
      label, mutant = m.of_tree(original)
      yml.write_text(yaml.safe_dump(mutant) if i % 3 else
                     "!!python/object:argparse.Namespace\n" + yaml.safe_dump(mutant))
    else:
      label, data = m.of_bytes(original_text.encode())
      yml.write_bytes(data)
    tally.run(label, lambda: importer._ncsn_base_config(str(src), None, None),  # pylint: disable=protected-access
              lambda out: checks.validate(out[0]), str(yml), time_limit)
  tally.assert_clean(400)


@pytest.fixture(scope="module")
def tf_checkpoint(tmp_path_factory):
  """The DDPM TensorFlow checkpoint of the tiny network (written by TensorFlow in a
  subprocess, as tests/pretrained's reference tests make it)."""
  pytest.importorskip("tensorflow")
  out = tmp_path_factory.mktemp("tf") / "diffusion_cifar10_model"
  res = subprocess.run([sys.executable, str(FIXTURES / "make_ddpm_tf_fixture.py"), str(out),
                        "--step=1234"], capture_output=True, text=True, timeout=600)
  assert res.returncode == 0, stderr_tail(res.stderr, 2000)
  return out


@pytest.mark.slow
def test_ddpm_tf_checkpoint(tmp_path, mutations, time_limit, tf_checkpoint, tiny_release):
  """A DDPM TensorFlow checkpoint: 120 mutations of its .index (a sorted table of
  protocol buffers) and 40 of its data shard."""
  _, shapes, _ = tiny_release
  prefix = ddpm_tf.find_prefix(str(tf_checkpoint))
  files = {".index": pathlib.Path(prefix + ".index"),
           ".data": pathlib.Path(glob_one(prefix + ".data-*"))}
  originals = {k: p.read_bytes() for k, p in files.items()}
  folder = tmp_path / "ckpt"
  folder.mkdir()
  target = {k: folder / p.name for k, p in files.items()}
  tally, m = Tally("DDPM TF checkpoint"), mutations(36)
  for i in range(160):
    which = ".index" if i < 120 else ".data"
    label, data = m.of_bytes(originals[which])
    for k in files:
      target[k].write_bytes(data if k == which else originals[k])
    new_prefix = str(target[".index"])[:-len(".index")]

    def read():
      with importer.untrusted.reading(new_prefix + ".index", "TensorFlow checkpoint",
                                      WeightsError):
        reader = ddpm_tf.CheckpointReader(new_prefix)
        ddpm_tf.spec_from_checkpoint(reader, 16)
      return importer.read_tf_weights(reader, shapes, raw=False)
    tally.run(f"{which}: {label}", read, lambda out: _finite_params(out[0], shapes),
              str(folder), time_limit)
  tally.assert_clean(160)


def glob_one(pattern: str) -> str:
  import glob  # pylint: disable=import-outside-toplevel
  found = glob.glob(pattern)
  assert len(found) == 1, found
  return found[0]


def test_damaged_files_through_the_command_line(tmp_path):
  """Two damaged files through ``python -m diffusion.pretrained import``: one line, exit 2,
  no --workdir and no temporary folder left."""
  folder = tmp_path / "release"
  folder.mkdir()
  data = bytearray(lzma.decompress((FIXTURES / "ncsn" / "ncsnv2.pth.xz").read_bytes()))
  (folder / "checkpoint.pth").write_bytes(bytes(data[: len(data) // 3]))
  shutil.copy(FIXTURES / "ncsn" / "ncsnv2_config.yml", folder / "config.yml")
  diff = tmp_path / "diffusers"
  shutil.copytree(TINY, diff)
  cfg = json.loads((diff / "config.json").read_text())
  cfg["layers_per_block"] = [1]
  (diff / "config.json").write_text(json.dumps(cfg))
  for src, name in ((folder / "checkpoint.pth", "checkpoint.pth"), (diff, "config.json")):
    res = subprocess.run([sys.executable, "-m", "diffusion.pretrained", "import", str(src),
                          f"--workdir={tmp_path / 'w'}", "--config=configs/ddpm/cifar10.py",
                          "--config.data.image_size=16"],
                         capture_output=True, text=True, timeout=600, cwd=str(REPO))
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1 and name in lines[0], res.stderr
    assert sorted(os.listdir(tmp_path)) == ["diffusers", "release"]

"""Temporaries named by their process (diffusion/io/temporaries.py): what a killed
command left is removed by the next one, what a live one is writing never is."""

import os
import signal
import subprocess
import sys
import time

from diffusion.io import temporaries
from diffusion.paths import REPO
from tests.conftest import stderr_tail


def dead_pid() -> int:
  """The pid of a process that has ended (and been reaped)."""
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  proc.wait()
  return proc.pid


def test_alive():
  assert temporaries.alive(os.getpid())
  assert not temporaries.alive(dead_pid())
  assert not temporaries.alive(0) and not temporaries.alive(-5)


def test_remove_stale_removes_only_what_dead_processes_left(tmp_path):
  dead, live = dead_pid(), os.getpid()
  for name in (f".run.partial-{dead}", f".run.partial-{live}", f".other.partial-{dead}"):
    (tmp_path / name).mkdir()
    (tmp_path / name / "x").write_text("half")
  (tmp_path / f".run.partial-{dead}.abc123.tmp").write_text("half")   # an atomic write's
  (tmp_path / "run").mkdir()                                          # not a temporary
  removed = temporaries.remove_stale(str(tmp_path), ["run"])
  assert sorted(os.path.basename(p) for p in removed) == sorted(
      [f".run.partial-{dead}", f".run.partial-{dead}.abc123.tmp"])
  assert sorted(os.listdir(tmp_path)) == sorted(
      ["run", f".run.partial-{live}", f".other.partial-{dead}"])
  temporaries.remove_stale(str(tmp_path))                  # any name
  assert sorted(os.listdir(tmp_path)) == sorted(["run", f".run.partial-{live}"])
  assert temporaries.remove_stale(str(tmp_path / "missing")) == []


def test_partial_path_names_this_process(tmp_path):
  path = temporaries.partial_path(str(tmp_path / "run"))
  assert path == str(tmp_path / f".run.partial-{os.getpid()}")


def test_remove_incomplete(tmp_path):
  """A folder a dead call made and did not finish goes; one that existed keeps all but
  that call's partial files; a finished one keeps everything; a live call's is kept."""
  dead = dead_pid()
  made, existed, done, live = (tmp_path / n for n in ("made", "existed", "done", "live"))
  for folder, created in ((made, True), (existed, False), (done, True)):
    folder.mkdir()
    (folder / f"{temporaries.INCOMPLETE}{dead}").write_text(
        "created\n" if created else "existed\n")
    (folder / "samples.npz").write_text("half")
  (existed / "mine.txt").write_text("the user's")
  (done / "meta.json").write_text("{}")
  live.mkdir()
  temporaries.mark_incomplete(str(live), True)
  for folder in (made, existed, done, live):
    temporaries.remove_incomplete(str(folder), ("samples.npz",), "meta.json")
  assert not made.exists()
  assert sorted(os.listdir(existed)) == ["mine.txt"]
  assert sorted(os.listdir(done)) == ["meta.json", "samples.npz"]
  assert os.listdir(live) == [f"{temporaries.INCOMPLETE}{os.getpid()}"]
  temporaries.unmark(str(live))
  assert os.listdir(live) == []


def test_a_killed_import_leaves_a_partial_folder_the_next_import_removes(tmp_path):
  """kill -9 of `python -m diffusion.pretrained import` while its .DIR.partial-<pid>
  folder exists: the rerun succeeds and the partial folder is gone (it used to stay)."""
  from tests.pretrained.test_importer import TINY  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / "run"
  argv = [sys.executable, "-m", "diffusion.pretrained", "import", str(TINY),
          f"--workdir={workdir}", "--config=configs/ddpm/cifar10.py",
          "--config.data.image_size=16"]
  proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  partial = tmp_path / f".run.partial-{proc.pid}"
  deadline = time.time() + 300
  while time.time() < deadline and not partial.exists() and proc.poll() is None:
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert partial.exists() and not workdir.exists()     # what the probe saw
  res = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert res.returncode == 0, stderr_tail(res.stderr, 2000)
  assert sorted(os.listdir(tmp_path)) == ["run"]

"""diffusion/io/workdir.py: one writer per workdir (the lock), a workdir another process
creates first, and a reader racing a writer that keeps one checkpoint."""

import os
import subprocess
import sys

import pytest

from diffusion.errors import WorkdirError
from diffusion.train.loop import train
from diffusion.paths import REPO

from tests.train.test_loop import toy_config



def test_lock_is_released_when_the_holder_ends(tmp_path):
  from diffusion.io.workdir import WorkdirLock  # pylint: disable=import-outside-toplevel
  lock = WorkdirLock(str(tmp_path)).acquire()
  with pytest.raises(WorkdirError, match=rf"is in use by pid {os.getpid()} on host"):
    WorkdirLock(str(tmp_path)).acquire()
  lock.release()
  WorkdirLock(str(tmp_path)).acquire().release()
  # A holder killed with SIGKILL releases it too (the kernel drops the flock).
  holder = subprocess.Popen([sys.executable, "-c", (
      "import sys, time; sys.path.insert(0, %r); from diffusion.io.workdir import WorkdirLock; "
      "WorkdirLock(%r).acquire(); print('held', flush=True); time.sleep(60)")
      % (REPO, str(tmp_path))], stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == "held"
  with pytest.raises(WorkdirError):
    WorkdirLock(str(tmp_path)).acquire()
  holder.kill()
  holder.wait()
  WorkdirLock(str(tmp_path)).acquire().release()


def test_make_workdir_when_another_process_creates_it_first(tmp_path, monkeypatch):
  """The race of two train.py on one new workdir: the loser's makedirs finds the folder the
  winner made; it must go on to the lock (one 'in use' line), never delete that folder."""
  from diffusion.io import workdir  # pylint: disable=import-outside-toplevel
  target = tmp_path / "run"
  real = os.makedirs

  def racing(path, *a, **k):
    real(path)
    (target / "metrics.jsonl").write_text("{}\n")   # the winner's run
    raise FileExistsError(path)

  monkeypatch.setattr(workdir.os, "makedirs", racing)
  assert workdir.make_workdir(str(target)) is False
  assert (target / "metrics.jsonl").exists()


def test_reader_racing_a_writer_that_keeps_one_checkpoint_finds_the_new_one(tmp_path,
                                                                            monkeypatch):
  """sample.py lists checkpoint N, the run saves N+k and deletes N (keep_checkpoints=1)
  before the read: the reader looks again instead of saying "train first"."""
  from diffusion import families
  from diffusion.io import checkpoints
  from diffusion.io.workdir import restore_ema_params
  w = str(tmp_path / "w")
  config = toy_config(**{"training.keep_checkpoints": 1})
  train(config, w, progress=False)
  listed = iter([[4]])   # the first listing: a step deleted since
  real = checkpoints.Checkpointer.steps
  monkeypatch.setattr(checkpoints.Checkpointer, "steps",
                      lambda self: next(listed, None) or real(self))
  _, step = restore_ema_params(w, families.make_family(config))
  assert step == 8

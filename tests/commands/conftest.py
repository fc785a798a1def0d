"""Fixtures of the command lines' tests: a run that train.py wrote, shared by the tests
of train.py and sample.py."""

import pytest

from tests.commands.test_train import run, TINY
from tests.conftest import stderr_tail


# One run for the session: the tests of both commands read it; none changes what train.py
# wrote there (sample.py adds its own output folders).
@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("digits")
  res = run("train.py", *TINY, f"--workdir={workdir}")
  assert res.returncode == 0, stderr_tail(res.stderr)
  return workdir, res.stdout

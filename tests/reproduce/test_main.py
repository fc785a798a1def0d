"""python -m diffusion.reproduce: list, unknown names, flags, and a signal during a real
reproduction, each one line."""

import signal
import subprocess
import sys

import pytest

from diffusion.reproduce.registry import BASELINES
from diffusion.paths import REPO

from tests.conftest import stderr_tail
from tests.test_cli import command, one_error



def test_list_and_unknown_names():
  res = subprocess.run([sys.executable, "-m", "diffusion.reproduce", "list"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
  assert res.returncode == 0, stderr_tail(res.stderr, 2000)
  for name in BASELINES:
    assert f"| {name} |" in res.stdout
  # Rows a terminal can show (the metrics by name, at most 3; values and bands are in the
  # docs/reproducing.md's table; they were 525 characters), and no "(not here)" of this workplace.
  assert max(len(line) for line in res.stdout.splitlines()) < 260
  assert "not here" not in res.stdout
  weights = BASELINES["ddim_cifar10_weights"].metrics
  assert f"| {', '.join(m.name for m in weights[:3])} (+{len(weights) - 3} more) |" in res.stdout
  res = subprocess.run([sys.executable, "-m", "diffusion.reproduce", "ncsn_fig3"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
  assert res.returncode == 2 and "did you mean" in res.stderr


def test_reproduce_command_line():
  # A flag's value after a space, and a positional NAME between flags.
  line = one_error(command("diffusion.reproduce", "--tier", "gpu", "ncsn_fig3_exact"))
  assert line == "error: ncsn_fig3_exact has no gpu tier; it has cpu."
  assert one_error(command("diffusion.reproduce")).startswith(
      "error: no NAME given; `python -m diffusion.reproduce list` shows the names. usage: ")
  assert "one NAME, not 'list extra'" in one_error(command("diffusion.reproduce", "list",
                                                           "extra"))
  assert one_error(command("diffusion.reproduce", "ncsn_fig3_exact", "--seed=x")) == (
      "error: flag --seed=x: invalid literal for int() with base 10: 'x'")


@pytest.mark.slow
@pytest.mark.parametrize("sig, phase", [(signal.SIGTERM, "model:"), (signal.SIGINT, "done:")])
def test_signal_in_training_or_evaluation_of_a_reproduction_is_one_line(tmp_path, sig, phase):
  """A real reproduction signalled when training starts ("model:") or while it evaluates
  ("done:"): one line, exit 2, no result."""
  import subprocess
  import sys
  repo = REPO
  proc = subprocess.Popen([sys.executable, "-m", "diffusion.reproduce", "ncsn_fig3_learned",
                           f"--workdir={tmp_path / 'w'}"], cwd=repo, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  for line in proc.stdout:
    if line.startswith(phase):
      proc.send_signal(sig)
      break
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 2 and "Traceback" not in err, err[-2000:]
  assert err.strip().splitlines()[-1].startswith("error: ")
  assert "resume with: python -m diffusion.reproduce ncsn_fig3_learned" in err
  assert not (tmp_path / "w" / "results.json").exists()


@pytest.mark.slow
def test_a_signal_at_any_point_of_a_reproduction_ends_cleanly(tmp_path):
  """Ctrl-C at many points of a real reproduction (start-up, training, evaluation): one
  true line and exit 2 with no result, or the finished result; never a crash, and no
  orbax temporary or partial folder left in its workdir."""
  from tests.test_cli import assert_ended_cleanly, signalled  # pylint: disable=import-outside-toplevel
  for i, delay in enumerate((1, 5, 12)):
    workdir = tmp_path / f"w{i}"
    argv = [sys.executable, "-m", "diffusion.reproduce", "ncsn_fig3_learned",
            f"--workdir={workdir}"]
    for delay_, rc, out, err in signalled(argv, [delay]):
      if rc == 2 and "resume with: python -m diffusion.reproduce" in err:
        # The runner's own line, naming what was kept and the command that resumes
        # ("error: SIGINT stopped training at step N (checkpoint saved); ... resume with").
        last = err.strip().splitlines()[-1]
        assert "Traceback" not in err and last.startswith("error: ") and (
            "resume with: python -m diffusion.reproduce" in last), err[-1500:]
      else:
        assert_ended_cleanly(delay_, rc, out, err)
      assert (workdir / "results.json").exists() == (rc == 0), (delay_, rc)
    left = [str(p) for p in workdir.rglob("*") if "orbax-checkpoint-tmp" in p.name
            or ".partial-" in p.name]
    assert not left, (delay, left)

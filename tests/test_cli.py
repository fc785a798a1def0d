"""diffusion/cli.py: every command parses with absl (help, a bad flag, the flags read before
absl), shows warnings but not libraries' routine logs, ends a signal at start-up in one
line, and warns once when JAX leaves an accelerator unused."""

import os
import re
import signal
import subprocess
import sys

import pytest

from diffusion import cli
from diffusion.paths import REPO
from tests.conftest import stderr_tail



# ---- every command parses with absl through diffusion/cli.py --------------------------------


def command(module, *args, **kwargs):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                        text=True, timeout=300, **kwargs)


def one_error(res, status=2):
  """The one ``error:`` line of a failed command (no traceback, nothing else on stderr)."""
  assert res.returncode == status, (res.returncode, stderr_tail(res.stderr, 2000))
  lines = res.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), stderr_tail(res.stderr, 2000)
  return lines[0]


@pytest.mark.parametrize("module, usage", [
    ("diffusion.reproduce", "python -m diffusion.reproduce NAME [--tier=cpu|gpu|paper|weights]"),
    ("diffusion.data", "python -m diffusion.data pack FOLDER OUT.npz --image_size 64"),
    ("diffusion.sweeps", "python -m diffusion.sweeps summarize DIR"),
    ("diffusion.evals.inception_convert", "python -m diffusion.evals.inception_convert"),
    ("diffusion.pretrained", "export --workdir=DIR --out=OUT [--checkpoint_step=N]"),
])
def test_help_shows_the_usage_and_a_bad_flag_is_one_line(module, usage):
  res = command(module, "--help")
  assert res.returncode == 0, stderr_tail(res.stderr, 2000)   # asking for help is not a failure
  assert usage in res.stdout and "Traceback" not in res.stderr
  assert one_error(command(module, "--no_such_flag=1", "list")) == (
      "error: Unknown command line flag 'no_such_flag'; --help lists the flags.")


def test_every_command_shows_warnings_but_not_library_info_logs(tmp_path):
  """cli.run quiets the logs for every command (reproduce printed 147 orbax INFO lines
  when only train.py and sample.py did this), errors stay, and a library's log of the
  command's own KeyboardInterrupt goes (the command's one line reports the signal)."""
  script = tmp_path / "probe_command.py"
  script.write_text(
      "from absl import logging\nfrom diffusion import cli\n"
      "def main(argv):\n  logging.info('routine orbax note')\n"
      "  logging.warning('something to act on')\n"
      # A library that catches the command's Ctrl-C and logs it (orbax at a signal).
      "  try:\n    raise KeyboardInterrupt\n  except BaseException:\n"
      "    logging.exception('Save Finalize thread failed')\n"
      "  try:\n    raise ValueError('disk')\n  except ValueError:\n"
      "    logging.exception('a write failed')\n"
      "cli.run(main)\n")
  res = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, PYTHONPATH=REPO))
  assert res.returncode == 0, stderr_tail(res.stderr, 2000)
  assert "something to act on" in res.stderr and "routine orbax note" not in res.stderr
  assert "a write failed" in res.stderr and "ValueError: disk" in res.stderr
  assert "Save Finalize" not in res.stderr and "KeyboardInterrupt" not in res.stderr


@pytest.mark.parametrize("sig, name", [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_a_signal_while_a_command_starts_is_one_line(sig, name):
  """A signal while `python -m diffusion.reproduce` imports the package (JAX, Flax, ...)
  ends in one line, exit 2 (the package's start-up handler, diffusion.cli.preamble)."""
  proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "diffusion.reproduce",
                           "list"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  for line in proc.stderr:   # -X importtime: a line as each module has been imported
    if re.search(r"\|\s+jax\b", line):   # JAX loads after diffusion/__init__'s preamble
      proc.send_signal(sig)
      break
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 2, err[-2000:]
  assert "Traceback" not in err
  assert err.strip().splitlines()[-1] == (f"error: interrupted ({name}) while starting; "
                                          "nothing was written.")


# A command whose signal arrives while Python runs a weakref callback: the handler's
# KeyboardInterrupt cannot be raised there (Python prints it and goes on). The callback
# sends the signal itself, so the handler runs inside it.
SWALLOWED_COMMAND = """
import os, signal, time, weakref
from diffusion import cli
from diffusion.errors import signal_name
cli.preamble()   # a command's start-up handlers (diffusion/__init__.py runs it for commands)

class Thing:
  pass

def main(argv):
  sig = signal.Signals[argv[1]]
  def died(ref):
    os.kill(os.getpid(), sig)
    for _ in range(10000):
      pass
  thing = Thing()
  ref = weakref.ref(thing, died)
  try:
    del thing
    time.sleep(10)
    print("the signal was lost")
  except KeyboardInterrupt as e:
    print("stopped by", type(e).__name__, signal_name(e))

cli.run(main)
"""


@pytest.mark.parametrize("sig, stopped", [("SIGINT", "KeyboardInterrupt Ctrl-C"),
                                          ("SIGTERM", "Interrupted SIGTERM")])
def test_a_signal_swallowed_by_a_library_callback_is_sent_again(tmp_path, sig, stopped):
  """sample.py and the other commands on the default handlers: the signal is not lost and
  nothing is printed (diffusion.cli._resend_swallowed_interrupt)."""
  script = tmp_path / "command.py"
  script.write_text(SWALLOWED_COMMAND)
  res = subprocess.run([sys.executable, str(script), sig], cwd=REPO, capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, PYTHONPATH=REPO))
  assert res.returncode == 0, stderr_tail(res.stderr, 2000)
  assert res.stdout.strip() == f"stopped by {stopped}" and res.stderr == "", res.stderr


def test_the_command_line_read_before_absl_parses_it():
  """cli.flag_value / config_overrides (config_flags runs the config file while absl
  parses, so --config, --workdir and the overrides are read first) take what absl takes."""
  from diffusion import cli  # pylint: disable=import-outside-toplevel
  from diffusion.errors import ConfigError  # pylint: disable=import-outside-toplevel
  argv = ["train.py", "--workdir", "a", "--config=c.py:x", "--config.optim.lr=1e-3",
          "--workdir=b", "--config.training.progress", "--", "--workdir=c"]
  assert cli.flag_value(argv, "workdir") == "b" and cli.config_file(argv) == "c.py"
  assert cli.flag_value(argv, "seed") is None and cli.flag_value(["p", "--seed"], "seed") is None
  assert cli.config_overrides(argv) == [("optim.lr", "1e-3"), ("training.progress", None)]
  assert cli.subcommand(["p", "pack", "x"], {"prepare": 0, "pack": 1}, "usage: p") == "pack"
  with pytest.raises(ConfigError, match=r"^'x' is not a command; choose a, b or c\. usage: p$"):
    cli.subcommand(["p", "x"], dict.fromkeys("abc"), "usage: p")
  with pytest.raises(ConfigError, match=r"^no command given; choose a\. usage: p$"):
    cli.subcommand(["p"], ["a"], "usage: p")
  assert cli.is_starting_command(["-m"]) and cli.is_starting_command(["/x/sample.py", "--a"])
  assert not cli.is_starting_command(["-c"]) and not cli.is_starting_command(["pytest"])


# ---- the accelerator warning ----------------------------------------------------------------


@pytest.fixture
def no_accelerator(monkeypatch):
  monkeypatch.delenv("JAX_PLATFORMS", raising=False)
  real_exists = os.path.exists
  monkeypatch.setattr(cli.os.path, "exists",
                      lambda p: False if p in ("/dev/nvidia0", "/dev/accel0") else real_exists(p))
  monkeypatch.setattr("shutil.which", lambda name: None)


def test_gpu_visible_but_jax_on_cpu_warns_in_one_line(no_accelerator, monkeypatch):
  monkeypatch.setattr("shutil.which",
                      lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None)
  line = cli.accelerator_warning(["cpu"])
  assert line is not None and "\n" not in line
  assert "GPU" in line and "only the CPU" in line and ".[cuda12]" in line
  assert cli.accelerator_warning(["gpu"]) is None          # JAX has it: silent
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")                 # CPU on purpose: silent
  assert cli.accelerator_warning(["cpu"]) is None


def test_dev_nvidia0_and_dev_accel0(no_accelerator, monkeypatch):
  real_exists = os.path.exists
  monkeypatch.setattr(cli.os.path, "exists",
                      lambda p: True if p == "/dev/nvidia0" else real_exists(p)
                      if p != "/dev/accel0" else False)
  assert "GPU" in cli.accelerator_warning(["cpu"])
  monkeypatch.setattr(cli.os.path, "exists",
                      lambda p: True if p == "/dev/accel0" else real_exists(p)
                      if p != "/dev/nvidia0" else False)
  line = cli.accelerator_warning(["cpu"])
  assert "TPU" in line and ".[tpu]" in line


def test_no_accelerator_no_warning(no_accelerator, capsys):
  assert cli.accelerator_warning(["cpu"]) is None
  cli.warn_if_accelerator_unused()
  assert capsys.readouterr().err == ""


# ---- quiet logs -----------------------------------------------------------------------------


def test_routine_library_warnings_are_dropped(caplog):
  import logging
  cli.quiet_logs()
  logger = logging.getLogger("absl")
  routine = ["CheckpointManagerOptions.read_only=True, setting save_interval_steps=0.",
             "Given directory is read only=/w/checkpoints",
             "OpenCV is not installed. Image decoding falls back to PIL.",
             "/data/tmp has no dataset_info.json"]
  assert all(not cli._FILTER.filter(logging.LogRecord("absl", logging.WARNING, "", 0, m,
                                                      None, None)) for m in routine)
  kept = logging.LogRecord("absl", logging.WARNING, "", 0, "a real warning", None, None)
  assert cli._FILTER.filter(kept)
  err = logging.LogRecord("absl", logging.ERROR, "", 0, routine[-1], None, None)
  assert cli._FILTER.filter(err)                                # errors always pass
  assert cli._FILTER in logger.filters and cli._FILTER in logging.getLogger().filters


# ---- a signal at many points of a command ----------------------------------------


def signalled(argv, delays, sig=signal.SIGINT, twice_after=None):
  """Runs ``argv`` once per delay (seconds after its start) and sends ``sig`` then (again
  ``twice_after`` seconds later when given); yields (delay, returncode, stdout, stderr).
  The delays sweep start-up, restore, compilation, the work and the exit."""
  import time  # pylint: disable=import-outside-toplevel
  for delay in delays:
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(delay)
    for i in range(1 if twice_after is None else 2):
      if i:
        time.sleep(twice_after)
      if proc.poll() is None:
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    yield delay, proc.returncode, out, err


def assert_ended_cleanly(delay, returncode, out, err, done_words=()):
  """Success (exit 0, with ``done_words`` on stdout) or one true ``error: interrupted`` line,
  exit 2: never a crash (a segmentation fault is -11 or 139), never 130, no traceback."""
  where = f"signal after {delay} s: exit {returncode}: {err[-1500:]}"
  assert returncode in (0, 2), where
  assert "Traceback" not in err and "Fatal Python error" not in err, where
  if returncode == 2:
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: interrupted"), where
  else:
    assert all(w in out for w in done_words), where

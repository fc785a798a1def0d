"""SIGINT / SIGTERM in the training loop: save within a call, say how long it waits, and
a second signal that stops at once without damaging what was saved.

The loop tells :class:`StopSignal` what it is doing (its ``phase``), and a signal acts by
it:

  phase      first signal                              a further signal
  compiling  save after the first call (the same       stop now (nothing ran yet), StopNow
             end as a signal between steps: a
             pre-empted job exits 0 with a checkpoint)
  waiting    save when the running call ends; say      stop now, without saving (the
             when (the last call's time)               running call's state is lost), StopNow
  duty       stop the sample grid / evaluation now     the same
             (its step is finished), DutyStopped;
             the loop saves that step
  saving,    save (or finish saving), then stop        the same: a checkpoint cut short
  other                                                would be lost (and its temporary
                                                       folder left behind)

A signal inside a garbage-collector callback (where a raised KeyboardInterrupt is printed
and swallowed) is delivered again 50 ms later.
"""

import signal
import sys
from typing import List, Optional

from diffusion.errors import signal_again

COMPILING, WAITING, DUTY, SAVING, OTHER = "compiling", "waiting", "duty", "saving", "other"


class StopNow(KeyboardInterrupt):
  """A signal stopped the loop without saving: ``phase`` is what it interrupted;
  ``abandoned`` is True when a compiled call may still be running (the process should
  exit without waiting for it: Python's normal exit would wait, then abort)."""

  def __init__(self, signal_name: str, phase: str):
    super().__init__(signal_name)
    self.signal_name, self.phase = signal_name, phase
    self.abandoned = phase in (COMPILING, WAITING)


class DutyStopped(KeyboardInterrupt):
  """A signal stopped a sample grid or an evaluation; the loop saves its step and stops."""


def in_gc_callback(frame) -> bool:
  """Whether Python is inside a garbage-collector callback (jax registers one), where a
  raised KeyboardInterrupt is printed and swallowed instead of stopping the program."""
  while frame is not None:
    if frame.f_code.co_name == "_xla_gc_callback":
      return True
    frame = frame.f_back
  return False


def signal_words(name: Optional[str]) -> str:
  """'Ctrl-C' for SIGINT, else the signal's name."""
  return "Ctrl-C" if name == "SIGINT" else str(name)


class StopSignal:
  """SIGTERM / SIGINT handled by the loop's phase (module docstring), for a ``with``
  block. ``received`` is the first signal's name (or the one a caller's handler took
  before the loop: ``pending``), which the loop checks between calls."""

  def __init__(self, pending: List[str]):
    self.received: Optional[str] = pending[0] if pending else None
    self.phase = OTHER
    self.step = 0                 # the step the running call ends at (phase WAITING)
    self.saving_step = 0          # the checkpoint being written (phase SAVING)
    self.remaining = lambda: None  # seconds until the running call ends, if known
    self.save_seconds: Optional[float] = None   # the last save's duration
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: leave signals alone
        pass
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  def _handle(self, signum, frame):
    name = signal.Signals(signum).name
    first = self.received is None
    stop_now = self.phase in (COMPILING, WAITING) and not first
    if (stop_now or self.phase == DUTY) and in_gc_callback(frame):
      signal_again(signum)
      return
    if first:
      self.received = name
    if stop_now:
      raise StopNow(name, self.phase)
    if self.phase == DUTY:
      raise DutyStopped(name)
    _say(self._first_words(name) if first else self._again_words(name))

  def _first_words(self, name: str) -> str:
    again = "send it again to stop at once, without saving"
    if self.phase == COMPILING:
      return (f"received {name} while the training step compiles: saving a checkpoint "
              f"when its first call (step {self.step}) is done, then stopping ({again})")
    if self.phase == WAITING:
      left = self.remaining()
      when = f"in about {_seconds(left)}" if left is not None else "when it ends"
      return (f"received {name}: saving a checkpoint when step {self.step} is done "
              f"({when}), then stopping ({again})")
    if self.phase == SAVING:
      return (f"received {name}: stopping once checkpoint {self.saving_step} is written"
              f"{self._save_time()}")
    return f"received {name}: saving a checkpoint, then stopping ({again})"

  def _again_words(self, name: str) -> str:
    if self.phase == SAVING:
      return (f"received {name} again: stopping once checkpoint {self.saving_step} is "
              f"written{self._save_time()}; a checkpoint cut short would be lost")
    return f"received {name} again: saving first, then stopping"

  def _save_time(self) -> str:
    return f" (about {_seconds(self.save_seconds)})" if self.save_seconds else ""


def _seconds(s: float) -> str:
  return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"


def _say(text: str) -> None:
  print(f"\n{text}", file=sys.stderr, flush=True)

"""What the training loop shows and how it waits: finished steps only.

JAX returns from a compiled call at once and runs it in the background; a loop that never
waited would count steps handed to XLA, not steps done (a bar running ahead of the work,
an ETA from dispatch times, and minutes of queued work after Ctrl-C). The loop therefore
waits for every call (:class:`CallWaiter`: measured to cost nothing on the quickstart,
BENCHMARKS.md "Waiting for each call"), and :class:`StepBar` counts what has finished.
"""

import queue
import sys
import threading
import time
from typing import Any, Optional

import jax
from tqdm import tqdm


class CallWaiter:
  """Waits until a call's outputs exist, in a helper thread: the main thread's wait is
  then an ``Event.wait``, which a signal handler interrupts (a wait inside JAX's C++ would
  hold the handler until the call ends). Also measures how long calls take."""

  def __init__(self):
    self._requests: "queue.SimpleQueue" = queue.SimpleQueue()
    self._thread = threading.Thread(target=self._serve, name="call-waiter", daemon=True)
    self._thread.start()
    self.dispatched: Optional[float] = None   # time.time() the call waited for was made
    self.seconds: Optional[float] = None      # the last call's duration (not the first)
    self._calls = 0

  def _serve(self) -> None:
    while True:
      tree, done = self._requests.get()
      if done is None:
        return
      try:
        jax.block_until_ready(tree)
      except Exception:  # noqa: BLE001 - the main thread meets the error reading the arrays
        pass
      done.set()

  def wait(self, tree: Any) -> None:
    """Returns when ``tree``'s arrays are computed (a signal handler may raise meanwhile)."""
    done = threading.Event()
    self._requests.put((tree, done))
    done.wait()
    self._calls += 1
    if self._calls > 1 and self.dispatched is not None:   # the first call compiles
      self.seconds = time.time() - self.dispatched

  def remaining(self) -> Optional[float]:
    """Seconds the call being waited for still needs, by the last call's duration (None
    before one was measured)."""
    if self.seconds is None or self.dispatched is None:
      return None
    return max(0.0, self.seconds - (time.time() - self.dispatched))

  def close(self) -> None:
    self._requests.put((None, None))


class StepBar:
  """The training bar on stderr: finished steps, the loss, and a rate and ETA only once
  ``ETA_AFTER`` calls after the first have been timed (the first call compiles: counting
  it made the quickstart's first ETA 11 hours)."""

  ETA_AFTER = 3
  REDRAW_SECONDS = 1.0   # tqdm's mininterval: steps finished since the last redraw are unshown
  _WITHOUT_RATE = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"

  def __init__(self, total: int, step: int):
    self._bar = tqdm(total=total, initial=step, unit="step", dynamic_ncols=True,
                     file=sys.stderr, mininterval=self.REDRAW_SECONDS,
                     bar_format=self._WITHOUT_RATE, postfix="compiling the training step")
    self._timed = -1   # calls finished after the first

  def done(self, step: int) -> None:
    """A call finished: the bar shows ``step``. The first call's time (compilation) is
    left out of the rate: the bar's clock starts when it ends."""
    self._timed += 1
    if self._timed == 0:
      bar = self._bar
      bar.set_postfix_str("", refresh=False)
      bar.n = bar.last_print_n = bar.initial = step
      bar.start_t = bar.last_print_t = time.time()
      bar.refresh()
      return
    if self._timed == self.ETA_AFTER:
      self._bar.bar_format = None   # tqdm's own: elapsed<remaining, rate
    self._bar.update(step - self._bar.n)

  def set_loss(self, loss: float) -> None:
    self._bar.set_postfix(loss=f"{loss:.4f}")

  def close(self) -> None:
    self._bar.close()

"""Progress of long work on the console: one line that says what starts, then a bar.

:class:`ProgressBar` is an ``on_progress(done, total)`` callback (the sampling chain's,
the bits/dim bound's, the Inception features') drawing a tqdm bar on stderr, opened at the
first report and gone (``leave=False``) once :meth:`ProgressBar.close` is called. A
disabled one (``--progress=false``) draws nothing.
"""

import sys
from typing import Optional

from tqdm import tqdm


class ProgressBar:
  """``on_progress(done, total)``: a tqdm bar of ``total`` ``unit`` named ``desc``."""

  def __init__(self, desc: str, unit: str = "step", enabled: bool = True):
    self.desc, self.unit, self.enabled = desc, unit, enabled
    self._bar: Optional[tqdm] = None

  def __call__(self, done: int, total: int) -> None:
    if not self.enabled:
      return
    if self._bar is None:
      self._bar = tqdm(total=total, unit=self.unit, desc=self.desc, leave=False,
                       dynamic_ncols=True, file=sys.stderr)
    self._bar.update(done - self._bar.n)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def announce(text: str) -> None:
  """One line on stdout saying what long work starts (and how big it is)."""
  print(text, flush=True)

"""The drawing helpers the papers' pictures share. matplotlib (~1.5 s to import, the
``plots`` extra) is imported inside the functions: only the pictures need it, and the
registry (``python -m diffusion.reproduce list``) stays free of it.

Without matplotlib a reproduction still computes its numbers and writes results.json:
each drawing function is a :func:`figure`, which then draws nothing and returns its path,
and the runner marks the pictures that are not there as missing, with the install line
(it says so in one line before the experiment starts: :func:`missing_line`)."""

import functools
import importlib.util
import math
import sys
from typing import Callable, List, Optional

import numpy as np

from diffusion import extras
from diffusion.io.images import make_grid


INSTALL = "pip install '.[plots]'"


def available() -> bool:
  """Whether matplotlib can be imported (found without importing it)."""
  return importlib.util.find_spec("matplotlib") is not None


def figure(draw: Callable[..., str]) -> Callable[..., str]:
  """``draw(path, ...) -> path``, or, without matplotlib, nothing drawn and ``path``
  returned (the runner then lists it as missing in results.json)."""
  @functools.wraps(draw)
  def drawn_if_possible(path: str, *args, **kwargs) -> str:
    return draw(path, *args, **kwargs) if available() else path
  return drawn_if_possible


def draws_figures(experiment: Callable) -> bool:
  """Whether ``experiment``'s module draws with these helpers (imports this module)."""
  return getattr(sys.modules.get(experiment.__module__), "plots", None) is sys.modules[__name__]


def missing_line(name: str, experiment: Callable) -> Optional[str]:
  """The one line a reproduction prints before it computes when it cannot draw its
  figures (None when it can, or draws none)."""
  if available() or not draws_figures(experiment):
    return None
  return (f"warning: matplotlib is not installed, so {name} will compute its numbers and "
          f"write results.json but draw no figures (marked missing there); {INSTALL} to "
          "draw them.")


def pyplot():
  """matplotlib.pyplot on the file-only Agg backend, or one line naming the plots extra."""
  extras.require("matplotlib")
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def save(fig, path: str) -> str:
  """Writes ``fig`` to ``path`` (PNG, 110 dpi, tight layout), closes it; returns ``path``."""
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  pyplot().close(fig)
  return path


@figure
def image_grid(path: str, images: np.ndarray, title: str, ncols: Optional[int] = None,
               row_labels: Optional[List[str]] = None) -> str:
  """uint8 grey images [N, H, W, 1] as one titled grid (``ncols`` per row, default √N),
  rows optionally labelled."""
  plt = pyplot()
  ncols = ncols or int(math.ceil(math.sqrt(len(images))))
  grid = make_grid(images, ncols)[..., 0]
  rows, tile = -(-len(images) // ncols), images.shape[1] + 1   # make_grid's 1-pixel pad
  fig, ax = plt.subplots(figsize=(0.55 * ncols + (1.3 if row_labels else 0.3),
                                  0.55 * rows + 0.9))
  ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
  ax.set_xticks([])
  if row_labels:
    ax.set_yticks([1 + tile * i + images.shape[1] / 2 - 0.5 for i in range(rows)],
                  row_labels[:rows], fontsize=8)
  else:
    ax.set_yticks([])
  ax.set_title(title, fontsize=8)
  return save(fig, path)


"""The drawing helpers the papers' pictures share. matplotlib (~1.5 s to import, the
``plots`` extra) is imported inside the functions: only the pictures need it, and the
registry (``python -m diffusion.reproduce list``) stays free of it."""

import math
from typing import List, Optional

import numpy as np

from diffusion import extras
from diffusion.io.images import make_grid


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


"""Sample grids: uint8 images tiled into one PNG."""

import math

import numpy as np
from PIL import Image

GRID_MIN_TILE = 128  # small images are upscaled (nearest) to tiles of at least this size:
                     # 4x for 32 px (a grid of 64 CIFAR samples: 1060 px), 16x for 8 px digits


GUTTER = 128         # mid-grey: a gutter that shows between dark digits and light photos alike


def make_grid(images: np.ndarray, ncols: int | None = None, pad: int = 1,
              pad_value: int = GUTTER) -> np.ndarray:
  """Tiles images [N, H, W, C] uint8 into one [rows*(H+pad)+pad, ..., C] uint8 image,
  ``pad`` pixels of ``pad_value`` between and around the tiles."""
  images = np.asarray(images)
  n, h, w, c = images.shape
  if n < 1:
    raise ValueError("make_grid needs at least one image")
  ncols = ncols or int(math.ceil(math.sqrt(n)))
  nrows = int(math.ceil(n / ncols))
  grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), pad_value, np.uint8)
  for i in range(n):
    r, k = divmod(i, ncols)
    grid[pad + r * (h + pad): pad + r * (h + pad) + h,
         pad + k * (w + pad): pad + k * (w + pad) + w] = images[i]
  return grid


def save_grid(path: str, images: np.ndarray, upscale: int | None = None,
              ncols: int | None = None) -> np.ndarray:
  """Writes images [N, H, W, C] uint8 as one PNG grid; returns the grid.

  ``upscale`` (nearest neighbour) defaults to max(1, GRID_MIN_TILE // H), so 8x8 digits
  are visible.
  """
  images = np.asarray(images)
  upscale = max(1, GRID_MIN_TILE // images.shape[1]) if upscale is None else upscale
  grid = make_grid(images, ncols)
  if upscale > 1:
    grid = grid.repeat(upscale, axis=0).repeat(upscale, axis=1)
  Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
  return grid

"""Sample grids: uint8 images tiled into one PNG."""

import math

import numpy as np


def make_grid(images: np.ndarray, ncols: int | None = None, pad: int = 1) -> np.ndarray:
  """Tiles images [N, H, W, C] uint8 into one [rows*(H+pad)+pad, ..., C] uint8 image."""
  images = np.asarray(images)
  n, h, w, c = images.shape
  ncols = ncols or int(math.ceil(math.sqrt(n)))
  nrows = int(math.ceil(n / ncols))
  grid = np.zeros((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), np.uint8)
  for i in range(n):
    r, k = divmod(i, ncols)
    grid[pad + r * (h + pad): pad + r * (h + pad) + h,
         pad + k * (w + pad): pad + k * (w + pad) + w] = images[i]
  return grid


def save_grid(path: str, images: np.ndarray, upscale: int = 1) -> np.ndarray:
  """Writes images [N, H, W, C] uint8 as one PNG grid (nearest upscaling); returns it."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  grid = make_grid(images)
  if upscale > 1:
    grid = grid.repeat(upscale, axis=0).repeat(upscale, axis=1)
  Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
  return grid

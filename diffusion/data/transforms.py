"""Pixel transforms: uint8 -> model range on the device, and back for writing.

Two halves:

* Device side (jittable, pure): :func:`preprocess` turns a uint8 batch into the
  float32 data the model sees — uniform dequantization (optional), scaling to
  [0, 1] or [-1, 1], and a random horizontal flip per example.
* Host side (numpy/PIL, at load time): centre crops, resizes and zero padding
  that bring stored images to ``data.image_size`` once, before training.

Ranges (``x`` is the uint8 pixel value v in {0..255}):

==========================  =========================  ==========================
data.uniform_dequantization  centered=False ([0, 1])    centered=True ([-1, 1])
==========================  =========================  ==========================
False (DDPM)                 v / 255                    2 v / 255 - 1
True (NCSN / DPM)            (v + u) / 256, u~U[0,1)    2 (v + u) / 256 - 1
==========================  =========================  ==========================

The dequantized form is NCSN's ``X/256*255 + U/256`` with ``X = v/255``: each
pixel value v owns the bin [v/256, (v+1)/256] (float32 rounding can land a value
exactly on the upper edge, so the bin is closed in tests).
"""

from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image


def data_range(centered: bool) -> Tuple[float, float]:
  """(lo, hi) of model-space data: (-1, 1) when centered, else (0, 1)."""
  return (-1.0, 1.0) if centered else (0.0, 1.0)


def preprocess(x: jax.Array, key: jax.Array, *, centered: bool,
               uniform_dequantization: bool, random_flip: bool,
               binarize: bool = False) -> jax.Array:
  """uint8 images -> float32 model data (jittable; the flags are static).

  Args:
    x: [B, H, W, C] uint8 (any integer or float dtype holding 0..255 works).
    key: PRNG key; split into (dequantization, flip) keys the same way whatever
      the flags, so turning one option off leaves the other's draws unchanged.
    centered: True -> [-1, 1] (DDPM), False -> [0, 1] (NCSN).
    uniform_dequantization: add U[0, 1) per pixel before dividing by 256.
    random_flip: mirror each example left-right with probability 1/2.
    binarize: each pixel becomes 1 with probability v/255, else 0 (dynamic binarization,
      a fresh draw for every key; needs centered=False). Its key is fold_in(key, 2), so
      the other options' draws are unchanged.

  Returns:
    [B, H, W, C] float32 in [0, 1] or [-1, 1] (see the module table).
  """
  k_deq, k_flip = jax.random.split(key)
  x = x.astype(jnp.float32)
  if uniform_dequantization:
    x = (x + jax.random.uniform(k_deq, x.shape, jnp.float32)) / 256.0
  else:
    x = x / 255.0
  if centered:
    x = 2.0 * x - 1.0
  # XLA may turn the division into a multiply by the reciprocal, putting v=255
  # one ulp above 1; clip so the range holds exactly.
  lo, hi = data_range(centered)
  x = jnp.clip(x, lo, hi)
  if binarize:
    x = jax.random.bernoulli(jax.random.fold_in(key, 2), x).astype(jnp.float32)
  if random_flip:
    # Flip after dequantizing: the flipped batch is then exactly the mirror
    # image of the unflipped one drawn with the same key.
    flip = jax.random.bernoulli(k_flip, 0.5, (x.shape[0],))
    x = jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x)
  return x


def fixed_binarization(images_uint8: np.ndarray, seed: int) -> np.ndarray:
  """One fixed Bernoulli(v/255) draw of every pixel (the evaluation split of a
  dynamically binarized dataset), float32 {0, 1}, a function of (images, seed)."""
  rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x62696e]))
  u = rng.random(images_uint8.shape, dtype=np.float64)
  return (u < np.asarray(images_uint8, np.float64) / 255.0).astype(np.float32)


def to_uint8(x, centered: bool, uniform_dequantization: bool = False,
             quantize: str = "round") -> np.ndarray:
  """Model-space floats -> uint8 pixels (host numpy), the inverse of preprocess.

  Args:
    x: float array in [-1, 1] (centered) or [0, 1]; values outside are clipped.
    centered: whether ``x`` is in [-1, 1].
    uniform_dequantization: True -> floor(x·256), the bin a dequantized value came from.
    quantize: otherwise, ``round`` (round(x·255), the exact inverse of v/255) or
      ``truncate`` (floor(x·255): improved-diffusion's ``((x + 1) * 127.5).to(uint8)``
      and score_sde's ``np.clip(x * 255, 0, 255).astype(np.uint8)``, the protocol of
      their FID numbers).

  Returns:
    np.uint8 array of ``x``'s shape.
  """
  x = np.asarray(x, dtype=np.float64)
  if centered:
    x = (x + 1.0) / 2.0
  if uniform_dequantization:
    v = np.floor(x * 256.0)
  elif quantize == "truncate":
    v = np.floor(np.clip(x, 0.0, 1.0) * 255.0)
  else:
    v = np.floor(x * 255.0 + 0.5)  # round half up, deterministic
  return np.clip(v, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------
# Host-side geometry (numpy + PIL), applied once per image at load time.


def _to_pil(img: np.ndarray):
  if img.ndim == 3 and img.shape[-1] == 1:
    return Image.fromarray(img[..., 0], mode="L"), True
  return Image.fromarray(img), False


def resize(img: np.ndarray, height: int, width: Optional[int] = None) -> np.ndarray:
  """Resizes a uint8 [H, W, C] image with antialiased bilinear (PIL).

  PIL widens the bilinear kernel when shrinking, which matches the
  ``antialias=True`` resizing that score_sde uses for CelebA and LSUN.
  """
  width = height if width is None else width
  if img.shape[0] == height and img.shape[1] == width:
    return img
  pil, gray = _to_pil(img)
  out = np.asarray(pil.resize((width, height), Image.BILINEAR))
  return out[..., None] if gray else out


def center_crop(img: np.ndarray, height: int, width: Optional[int] = None) -> np.ndarray:
  """Central [height, width] window; offsets (H - height)//2, (W - width)//2."""
  width = height if width is None else width
  h, w = img.shape[:2]
  if height > h or width > w:
    raise ValueError(f"crop {height}x{width} is larger than the image {h}x{w}")
  top, left = (h - height) // 2, (w - width) // 2
  return img[top:top + height, left:left + width]


def crop_then_resize(img: np.ndarray, crop: int, size: int) -> np.ndarray:
  """CelebA recipe (NCSN, DDIM, score_sde): centre crop ``crop`` px, resize to ``size``."""
  return resize(center_crop(img, crop), size)


def resize_shorter_then_crop(img: np.ndarray, size: int) -> np.ndarray:
  """LSUN recipe: resize so the shorter side is ``size``, then centre crop size×size."""
  h, w = img.shape[:2]
  scale = size / min(h, w)
  # max(size, .) guards against rounding the shorter side to size - 1.
  new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
  return center_crop(resize(img, new_h, new_w), size)


def fit_square(img: np.ndarray, size: int) -> np.ndarray:
  """Generic fallback: any [H, W, C] -> [size, size, C] (resize shorter side, crop)."""
  if img.shape[0] == size and img.shape[1] == size:
    return img
  return resize_shorter_then_crop(img, size)

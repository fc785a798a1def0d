"""Image sets that need no tfds: sklearn's digits, the shared CIFAR-10 sample,
and a user's own ``.npz`` (plus :func:`pack_images` to make one from a folder).

Every loader returns uint8 [N, H, W, C] already at ``data.image_size``; the
device-side scaling happens in :mod:`diffusion.data.transforms`.
"""

import pathlib
from typing import Optional

import numpy as np
from PIL import Image

from diffusion import paths
from diffusion.config.catalog import DIGITS_NUM_TRAIN, DIGITS_SIZES
from diffusion.data import transforms
from diffusion.errors import ConfigError

# Shared lossless CIFAR-10 sample: PNGs of 1000 rows x 1024 RGB pixels, one row
# per 32x32x3 image, in the official order.
CIFAR10_SAMPLE_FILES = {
    "train": [f"cifar10_batch_{i}.png" for i in range(4)],   # train images 0-3999
    "test": ["cifar10_batch_50.png"],                          # test images 0-999
}

DEFAULT_CIFAR10_SAMPLE_DIR = pathlib.Path(paths.REPO).parent / "shared" / "data" / "cifar10-sample"

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


def load_digits(split: str, image_size: int) -> np.ndarray:
  """sklearn digits as uint8 [N, S, S, 1], S = image_size ∈ {8, 16, 32}.

  Values 0..16 map to round(v·255/16); sizes above 8 repeat each pixel
  (nearest neighbour), so the upsampled images hold exactly the same values.
  """
  # sklearn's import takes ~2 s: only the digits need it, so it stays here.
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  if image_size not in DIGITS_SIZES:
    raise ConfigError(f"data.image_size={image_size!r} is not valid for data.dataset='digits'; "
                      f"choose one of {', '.join(map(str, DIGITS_SIZES))}.")
  raw = datasets.load_digits().images                        # float64 [1797, 8, 8] in 0..16
  images = np.floor(raw * (255.0 / 16.0) + 0.5).astype(np.uint8)
  if split == "train":
    images = images[:DIGITS_NUM_TRAIN]
  elif split == "test":
    images = images[DIGITS_NUM_TRAIN:]
  else:
    raise ConfigError(f"data.split={split!r} is not valid for data.dataset='digits'; "
                      "choose one of 'train', 'test'.")
  factor = image_size // 8
  images = images.repeat(factor, axis=1).repeat(factor, axis=2)
  return images[..., None]


def load_digits_labels(split: str) -> np.ndarray:
  """The digit classes 0..9 of :func:`load_digits`'s images, int32 [N]."""
  from sklearn import datasets  # pylint: disable=g-import-not-at-top  # ~2 s; digits only
  target = datasets.load_digits().target.astype(np.int32)
  return target[:DIGITS_NUM_TRAIN] if split == "train" else target[DIGITS_NUM_TRAIN:]


def cifar10_sample_dir(data_dir: str) -> pathlib.Path:
  """data.data_dir, or ../shared/data/cifar10-sample next to the repository."""
  return pathlib.Path(data_dir).expanduser() if data_dir else DEFAULT_CIFAR10_SAMPLE_DIR


def load_cifar10_sample(split: str, data_dir: str, image_size: int) -> np.ndarray:
  """The shared 5,000-image CIFAR-10 sample as uint8 [N, S, S, 3].

  Train: 4,000 images (batches 0-3), test: 1,000 (batch 50), official order.
  Sizes other than 32 are resized on the host (antialiased bilinear).
  """
  if split not in CIFAR10_SAMPLE_FILES:
    raise ConfigError(f"data.split={split!r} is not valid for data.dataset='cifar10_sample'; "
                      "choose one of 'train', 'test'.")
  folder = cifar10_sample_dir(data_dir)
  paths = [folder / f for f in CIFAR10_SAMPLE_FILES[split]]
  missing = [p.name for p in paths if not p.is_file()]
  if missing:
    raise ConfigError(
        f"data.data_dir={str(folder)!r}: data.dataset='cifar10_sample' needs "
        f"{', '.join(missing)} there (the shared lossless CIFAR-10 sample); "
        "point data.data_dir at the folder that holds cifar10_batch_*.png.")
  parts = []
  for p in paths:
    rows = np.asarray(Image.open(p).convert("RGB"))          # [1000, 1024, 3]
    if rows.shape != (1000, 1024, 3):
      raise ConfigError(f"{p}: expected a 1000x1024 RGB PNG, found shape {rows.shape}.")
    parts.append(rows.reshape(1000, 32, 32, 3))
  images = np.concatenate(parts)
  if image_size != 32:
    images = np.stack([transforms.resize(im, image_size) for im in images])
  return images


def load_cifar10_sample_labels(split: str, data_dir: str) -> Optional[np.ndarray]:
  """The classes of the CIFAR-10 sample (from cifar10_labels.js: 50,000 train labels,
  then the first 1,000 test labels), int32 [N], or None when the file is absent."""
  path = cifar10_sample_dir(data_dir) / "cifar10_labels.js"
  if not path.is_file():
    return None
  text = path.read_text()
  values = np.asarray([int(v) for v in text[text.index("[") + 1:text.rindex("]")].split(",")],
                      np.int32)
  return values[:4000] if split == "train" else values[50_000:51_000]


def load_npz(split: str, path: str, image_size: int, num_channels: int) -> np.ndarray:
  """A user's own images from an .npz file, as uint8 [N, S, S, C].

  The file holds key ``images`` (the train split), uint8 [N, H, W, C] or
  [N, H, W] (grayscale); other splits are read from key ``<split>_images``
  (e.g. ``test_images``). Images that are not S×S are resized so the shorter
  side is S and centre-cropped, once, at load time.
  """
  if not path:
    raise ConfigError("data.data_dir='' is not valid for data.dataset='npz'; set it to an "
                      ".npz file with key 'images' (uint8 [N, H, W, C]), e.g. made by "
                      "`python -m diffusion.data pack FOLDER OUT.npz --image_size 64`.")
  file = pathlib.Path(path).expanduser()
  if not file.is_file():
    raise ConfigError(f"data.data_dir={path!r}: no such .npz file (data.dataset='npz').")
  key = "images" if split == "train" else f"{split}_images"
  with np.load(file, allow_pickle=False) as npz:
    if key not in npz.files:
      raise ConfigError(f"data.data_dir={path!r}: key {key!r} (split {split!r}) not found; "
                        f"the file has {sorted(npz.files)}.")
    images = npz[key]
  if images.ndim == 3:
    images = images[..., None]
  if images.dtype != np.uint8 or images.ndim != 4:
    raise ConfigError(f"data.data_dir={path!r}: {key!r} must be uint8 [N, H, W, C]; found "
                      f"{images.dtype} with shape {images.shape}.")
  if images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3):
    raise ConfigError(f"data.data_dir={path!r}: {key!r} has shape {images.shape}, which looks "
                      "channels-first [N, C, H, W]; save it channels-last, e.g. "
                      "np.transpose(images, (0, 2, 3, 1)).")
  if images.shape[-1] != num_channels:
    raise ConfigError(f"data.num_channels={num_channels} does not match {path!r}, whose "
                      f"images have {images.shape[-1]} channels.")
  if images.shape[1:3] != (image_size, image_size):
    images = np.stack([transforms.fit_square(im, image_size) for im in images])
  return images


def pack_images(folder: str, out_path: str, image_size: int, grayscale: bool = False,
                limit: Optional[int] = None) -> int:
  """Writes every image under ``folder`` (recursively, sorted) to an .npz.

  Each image is converted to RGB (or L), resized so its shorter side is
  ``image_size`` and centre-cropped; the result is saved under key ``images``
  as uint8 [N, S, S, C], ready for ``data.dataset='npz'``.

  Returns:
    The number of images written.
  """
  root = pathlib.Path(folder).expanduser()
  if not root.is_dir():
    raise ConfigError(f"{folder!r} is not a folder of images.")
  files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
  if limit:
    files = files[:limit]
  if not files:
    raise ConfigError(f"{folder!r} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
  images = []
  for p in files:
    with Image.open(p) as im:
      arr = np.asarray(im.convert("L" if grayscale else "RGB"))
    if grayscale:
      arr = arr[..., None]
    images.append(transforms.fit_square(arr, image_size))
  np.savez(out_path, images=np.stack(images).astype(np.uint8))
  return len(images)

"""Static facts about every ``data.dataset`` name: kind, native size, channels, splits.

Nothing here reads a file or imports a data library, so the config layer
(:mod:`diffusion.config`) can check dataset names and fill in a dataset's own
image size and channel count, and ``sample.py`` can learn the example shape of a
run without loading its data.
"""

import dataclasses
from typing import Mapping, Optional, Tuple

from diffusion.errors import check_choice


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a dataset name means (no files are read).

  Attributes:
    name: dataset name as written in ``data.dataset``.
    kind: ``"image"`` or ``"toy"``.
    image_size: the native image side (None for toys / npz).
    num_channels: 1 or 3 (None for toys / npz, where the config says).
    num_examples: examples per split where fixed ({} when it depends on files).
    in_memory: True when the set fits on the device (device-resident path).
    reader: how its examples are read (``diffusion.data.sources.READERS``): digits,
      tfds (a split decoded into memory), tfds_stream (random access), files
      (cifar10_sample), npz, toy (generated).
    tfds_name: the tensorflow-datasets name, or None.
  """
  name: str
  kind: str
  image_size: Optional[int]
  num_channels: Optional[int]
  num_examples: Mapping[str, int]
  in_memory: bool
  reader: str
  tfds_name: Optional[str] = None


LSUN_CATEGORIES = (
    "classroom", "bedroom", "bridge", "church_outdoor", "conference_room", "dining_room",
    "kitchen", "living_room", "restaurant", "tower", "airplane", "bicycle", "bird", "boat",
    "bottle", "bus", "car", "cat", "chair", "cow", "dining_table", "dog", "horse",
    "motorbike", "person", "potted_plant", "sheep", "sofa", "train", "tv-monitor")
CELEBA_HQ_RESOLUTIONS = (1024, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1)
# digits: scikit-learn's copy of the UCI 8x8 handwritten digits (1,797 images).
# Fixed split in sklearn order: first 1,500 train, last 297 test.
DIGITS_NUM_TRAIN = 1500
DIGITS_SIZES = (8, 16, 32)   # 8 native; 16 / 32 by nearest-neighbour (pixel repeat)

# The one list of data.dataset names (diffusion.data.sources.DATASETS is derived from it).
INFO = {
    "digits": DatasetInfo("digits", "image", 8, 1, {"train": 1500, "test": 297}, True,
                          "digits"),
    "mnist": DatasetInfo("mnist", "image", 28, 1, {"train": 60000, "test": 10000}, True,
                         "tfds", "mnist"),
    "fashion_mnist": DatasetInfo("fashion_mnist", "image", 28, 1,
                                 {"train": 60000, "test": 10000}, True, "tfds", "fashion_mnist"),
    "cifar10": DatasetInfo("cifar10", "image", 32, 3, {"train": 50000, "test": 10000}, True,
                           "tfds", "cifar10"),
    "cifar10_sample": DatasetInfo("cifar10_sample", "image", 32, 3,
                                  {"train": 4000, "test": 1000}, True, "files"),
    "npz": DatasetInfo("npz", "image", None, None, {}, True, "npz"),
    "celeb_a": DatasetInfo("celeb_a", "image", 64, 3,
                           {"train": 162770, "validation": 19867, "test": 19962}, False,
                           "tfds_stream", "celeb_a"),
    "celeb_a_hq": DatasetInfo("celeb_a_hq", "image", 256, 3, {"train": 30000}, False,
                              "tfds_stream", "celeb_a_hq/256"),
    "lsun": DatasetInfo("lsun", "image", 256, 3, {}, False, "tfds_stream", "lsun"),
    "swiss_roll": DatasetInfo("swiss_roll", "toy", None, 2, {}, True, "toy"),
    "swiss_roll_unit": DatasetInfo("swiss_roll_unit", "toy", None, 2, {}, True, "toy"),
    "mixture": DatasetInfo("mixture", "toy", None, None, {}, True, "toy"),
    "eight_gaussians": DatasetInfo("eight_gaussians", "toy", None, 2, {}, True, "toy"),
    "checkerboard": DatasetInfo("checkerboard", "toy", None, 2, {}, True, "toy"),
}


def allowed_names() -> Tuple[str, ...]:
  """Every accepted ``data.dataset`` spelling, for messages."""
  return tuple(n if n != "lsun" else "lsun/<category>" for n in INFO)


def base_name(name) -> str:
  """Base name of ``data.dataset`` ('lsun/cat' -> 'lsun'), or ConfigError naming the field."""
  if not isinstance(name, str):
    check_choice("data.dataset", name, allowed_names())
  base = name.split("/")[0]
  if base == "lsun":
    check_choice("data.dataset", name, [f"lsun/{c}" for c in LSUN_CATEGORIES])
  elif base == "celeb_a_hq" and "/" in name:
    check_choice("data.dataset", name, [f"celeb_a_hq/{r}" for r in CELEBA_HQ_RESOLUTIONS])
  elif name not in INFO:
    check_choice("data.dataset", name, allowed_names())
  return base


def dataset_info(name: str) -> DatasetInfo:
  """The facts of a ``data.dataset`` value (ConfigError if unknown)."""
  base = base_name(name)
  info = INFO[base]
  if base == "lsun":
    info = dataclasses.replace(info, name=name, tfds_name=name)
  elif base == "celeb_a_hq" and "/" in name:
    info = dataclasses.replace(info, name=name, tfds_name=name,
                               image_size=int(name.split("/")[1]))
  return info

"""Data sources: what ``make_source(config.data, split)`` returns.

A source serves batches in one or both of two ways:

* Device-resident (``source.device_resident``): ``source.arrays`` is a dict of
  host numpy arrays (``{"images": uint8 [N, H, W, C]}``; ``{}`` for the toy
  sets). The trainer puts them on the device once and calls the pure function
  ``source.get_batch(arrays, key, batch_size)`` inside its jitted step with
  ``key = fold_in(data_key, step)``: index draw, dequantization, scaling and
  flip all happen on the device, with no host round trip per step. Examples are
  drawn uniformly *with* replacement (i.i.d. minibatches), so the batch is a
  pure function of the key, hence of (seed, step).
* Streaming: ``source.iterator(batch_size, seed, start_step, process_index,
  process_count)`` yields host uint8 batches, and the jittable
  ``source.preprocess(batch, key)`` turns one into model data on the device.
  The order is epoch-wise without replacement: epoch e visits a permutation of
  all examples seeded by (seed, e), and step s takes global positions
  [s·B, (s+1)·B) of the concatenated epochs. The batch of a step is therefore a
  pure function of (seed, step): an iterator started at ``start_step=k`` yields
  exactly what an uninterrupted one yields from step k. With several hosts,
  ``batch_size`` is the global batch and host p receives its contiguous slice
  of B/P examples of every global batch.

Every source has both: in-memory image sets also stream from their host
arrays (``data.device_resident=False``), and the toy sets' iterator yields
``get_batch`` results. Large tfds sets (CelebA, CelebA-HQ, LSUN) stream only,
decoding, cropping and resizing on host threads ahead of the consumer.
"""

import collections
import concurrent.futures
import dataclasses
import functools
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from diffusion.data import files
from diffusion.data import tfds_sources
from diffusion.data import toy
from diffusion.data import transforms
from diffusion.config_fields import get_field
from diffusion.errors import ConfigError, check_choice, check_positive

# Defaults of config.data used when a field is missing (same as configs/base.py).
_DEFAULTS = dict(
    dataset="cifar10", image_size=32, num_channels=3, centered=True,
    uniform_dequantization=False, random_flip=True, tfds_data_dir="", data_dir="",
    device_resident=True, mixture_weights=(0.8, 0.2),
    mixture_means=((5.0, 5.0), (-5.0, -5.0)), mixture_stds=(1.0, 1.0),
)

CELEBA_CROP = 140        # CelebA: centre crop 140 px, then resize (NCSN, DDIM, score_sde)
STREAM_THREADS = 4       # host threads decoding batches ahead of a streaming consumer

LSUN_CATEGORIES = (
    "classroom", "bedroom", "bridge", "church_outdoor", "conference_room", "dining_room",
    "kitchen", "living_room", "restaurant", "tower", "airplane", "bicycle", "bird", "boat",
    "bottle", "bus", "car", "cat", "chair", "cow", "dining_table", "dog", "horse",
    "motorbike", "person", "potted_plant", "sheep", "sofa", "train", "tv-monitor")
CELEBA_HQ_RESOLUTIONS = (1024, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Static facts about a dataset name (no files are read).

  Attributes:
    name: dataset name as written in ``data.dataset``.
    kind: ``"image"`` or ``"toy"``.
    image_size: the paper-default ``data.image_size`` (None for toys / npz).
    num_channels: 1 or 3 (None for toys / npz).
    num_examples: examples per split where fixed ({} when it depends on files).
    in_memory: True when the set fits on the device (device-resident path).
    tfds_name: the tensorflow-datasets name, or None.
    shape: per-example shape at the default size ((2,) for toys).
  """
  name: str
  kind: str
  image_size: Optional[int]
  num_channels: Optional[int]
  num_examples: Mapping[str, int]
  in_memory: bool
  tfds_name: Optional[str] = None

  @property
  def shape(self) -> Optional[Tuple[int, ...]]:
    if self.kind == "toy":
      return (2,)
    if self.image_size is None:
      return None
    return (self.image_size, self.image_size, self.num_channels)


_INFO = {
    "digits": DatasetInfo("digits", "image", 8, 1, {"train": 1500, "test": 297}, True),
    "mnist": DatasetInfo("mnist", "image", 28, 1, {"train": 60000, "test": 10000}, True,
                         "mnist"),
    "fashion_mnist": DatasetInfo("fashion_mnist", "image", 28, 1,
                                 {"train": 60000, "test": 10000}, True, "fashion_mnist"),
    "cifar10": DatasetInfo("cifar10", "image", 32, 3, {"train": 50000, "test": 10000}, True,
                           "cifar10"),
    "cifar10_sample": DatasetInfo("cifar10_sample", "image", 32, 3,
                                  {"train": 4000, "test": 1000}, True),
    "npz": DatasetInfo("npz", "image", None, None, {}, True),
    "celeb_a": DatasetInfo("celeb_a", "image", 64, 3,
                           {"train": 162770, "validation": 19867, "test": 19962}, False,
                           "celeb_a"),
    "celeb_a_hq": DatasetInfo("celeb_a_hq", "image", 256, 3, {"train": 30000}, False,
                              "celeb_a_hq/256"),
    "lsun": DatasetInfo("lsun", "image", 256, 3, {}, False, "lsun"),
    "swiss_roll": DatasetInfo("swiss_roll", "toy", None, None, {}, True),
    "mixture": DatasetInfo("mixture", "toy", None, None, {}, True),
    "eight_gaussians": DatasetInfo("eight_gaussians", "toy", None, None, {}, True),
    "checkerboard": DatasetInfo("checkerboard", "toy", None, None, {}, True),
}


def _allowed_names() -> Tuple[str, ...]:
  return tuple(n if n != "lsun" else "lsun/<category>" for n in _INFO)


def _check_name(name: Any) -> str:
  """Base name of ``data.dataset`` ('lsun/cat' -> 'lsun'), or ConfigError."""
  if not isinstance(name, str):
    check_choice("data.dataset", name, _allowed_names())
  base = name.split("/")[0]
  if base == "lsun":
    check_choice("data.dataset", name, [f"lsun/{c}" for c in LSUN_CATEGORIES])
  elif base == "celeb_a_hq" and "/" in name:
    check_choice("data.dataset", name, [f"celeb_a_hq/{r}" for r in CELEBA_HQ_RESOLUTIONS])
  elif name not in _INFO:
    check_choice("data.dataset", name, _allowed_names())
  return base


def dataset_info(name: str) -> DatasetInfo:
  """Defaults and sizes for a ``data.dataset`` value (ConfigError if unknown)."""
  base = _check_name(name)
  info = _INFO[base]
  if base == "lsun":
    info = dataclasses.replace(info, name=name, tfds_name=name)
  elif base == "celeb_a_hq" and "/" in name:
    info = dataclasses.replace(info, name=name, tfds_name=name,
                               image_size=int(name.split("/")[1]))
  return info


# ----------------------------------------------------------------------------
# Batch order for the streaming path


def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The visiting order of epoch ``epoch``: int64 [N], a pure function of its args."""
  rng = np.random.default_rng(np.random.SeedSequence([int(seed) % 2**32, int(epoch)]))
  return rng.permutation(num_examples)


def batch_indices(num_examples: int, batch_size: int, seed: int, step: int,
                  process_index: int = 0, process_count: int = 1,
                  permutation: Callable[[int], np.ndarray] = None) -> np.ndarray:
  """Example indices of this host's share of global batch ``step``.

  Args:
    num_examples: N.
    batch_size: global batch B (a multiple of process_count).
    seed, step: the stream is a pure function of these.
    process_index, process_count: host p gets positions [p·B/P, (p+1)·B/P) of
      the global batch.
    permutation: optional cached ``epoch -> epoch_permutation(seed, epoch, N)``.

  Returns:
    int64 [B / process_count].
  """
  if permutation is None:
    permutation = functools.partial(epoch_permutation, seed, num_examples=num_examples)
  local = batch_size // process_count
  start = step * batch_size + process_index * local
  pos = start + np.arange(local, dtype=np.int64)
  epochs, offsets = np.divmod(pos, num_examples)
  out = np.empty(local, np.int64)
  for e in np.unique(epochs):
    sel = epochs == e
    out[sel] = permutation(int(e))[offsets[sel]]
  return out


class BatchIterator:
  """Iterator of host batches for steps start_step, start_step+1, ...

  ``next_step`` is the step of the batch the next ``next()`` returns. With
  ``threads > 0`` batches are built ahead on a thread pool (order kept).
  """

  def __init__(self, load: Callable[[int], np.ndarray], start_step: int, threads: int = 0):
    self._load = load
    self.next_step = int(start_step)
    self._pool = None
    self._pending = collections.deque()
    if threads > 0:
      self._pool = concurrent.futures.ThreadPoolExecutor(threads, "diffusion-data")
      for s in range(self.next_step, self.next_step + 2 * threads):
        self._pending.append(self._pool.submit(load, s))

  def __iter__(self):
    return self

  def __next__(self) -> np.ndarray:
    if self._pool is None:
      batch = self._load(self.next_step)
    else:
      batch = self._pending.popleft().result()
      self._pending.append(self._pool.submit(self._load, self.next_step + len(self._pending) + 1))
    self.next_step += 1
    return batch

  def close(self) -> None:
    """Stops the worker threads (pending batches are dropped)."""
    if self._pool is not None:
      self._pool.shutdown(wait=False, cancel_futures=True)
      self._pool = None

  def __del__(self):
    self.close()


def _check_global_batch(batch_size: int, process_index: int, process_count: int) -> None:
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} is not in [0, {process_count}).")
  if batch_size % process_count:
    raise ConfigError(f"batch size {batch_size} is not a multiple of the number of hosts "
                      f"({process_count}); each host reads an equal share of every batch.")


# ----------------------------------------------------------------------------
# Sources


@dataclasses.dataclass(frozen=True, eq=False)
class ImageSource:
  """uint8 images served as float32 [B, H, W, C] in [0, 1] or [-1, 1].

  Attributes:
    name, split: what was asked for.
    shape: per-example (H, W, C).
    num_examples: N of the split.
    arrays: ``{"images": uint8 [N, H, W, C]}`` for in-memory sets, else {}.
    device_resident: True when the trainer should put ``arrays`` on the device
      and call :meth:`get_batch` (in-memory set and ``data.device_resident``).
    centered, uniform_dequantization, random_flip: the preprocessing flags.
    read: streaming sets only: host function, indices -> uint8 [n, H, W, C].
  """
  name: str
  split: str
  shape: Tuple[int, int, int]
  num_examples: int
  arrays: Dict[str, np.ndarray]
  device_resident: bool
  centered: bool
  uniform_dequantization: bool
  random_flip: bool
  read: Optional[Callable[[np.ndarray], np.ndarray]] = None
  threads: int = 0

  is_image = True

  @property
  def x_range(self) -> Tuple[float, float]:
    """(lo, hi) of the model-space data."""
    return transforms.data_range(self.centered)

  def preprocess(self, batch: jax.Array, key: jax.Array) -> jax.Array:
    """uint8 [B, H, W, C] -> float32 model data (jittable): dequantize, scale, flip."""
    return transforms.preprocess(
        batch, key, centered=self.centered,
        uniform_dequantization=self.uniform_dequantization, random_flip=self.random_flip)

  def get_batch(self, arrays: Mapping[str, jax.Array], key: jax.Array,
                batch_size: int) -> jax.Array:
    """Pure, jittable (batch_size static): B examples drawn i.i.d. uniformly.

    Args:
      arrays: ``source.arrays`` (typically already on the device).
      key: e.g. ``fold_in(data_key, step)``.
      batch_size: B.

    Returns:
      float32 [B, H, W, C] in ``x_range``.
    """
    if "images" not in arrays:
      raise ValueError(f"{self.name} is a streaming source; use iterator() + preprocess().")
    images = arrays["images"]
    k_idx, k_pre = jax.random.split(key)
    idx = jax.random.randint(k_idx, (batch_size,), 0, images.shape[0])
    return self.preprocess(jnp.take(images, idx, axis=0), k_pre)

  def iterator(self, batch_size: int, seed: int, start_step: int = 0, process_index: int = 0,
               process_count: int = 1) -> BatchIterator:
    """Host uint8 batches [batch_size / process_count, H, W, C] from ``start_step`` on."""
    _check_global_batch(batch_size, process_index, process_count)
    n = self.num_examples
    permutation = functools.lru_cache(maxsize=2)(
        functools.partial(epoch_permutation, seed, num_examples=n))
    read = self.read
    if read is None:
      images = self.arrays["images"]
      read = lambda idx: images[idx]

    def load(step: int) -> np.ndarray:
      return read(batch_indices(n, batch_size, seed, step, process_index, process_count,
                                permutation))

    return BatchIterator(load, start_step, threads=self.threads if self.read else 0)


@dataclasses.dataclass(frozen=True, eq=False)
class ToySource:
  """Generated 2-D points: every batch is drawn fresh from the key (arrays = {})."""
  name: str
  split: str
  sampler: Callable[[jax.Array, int], jax.Array]
  shape: Tuple[int, ...] = (2,)
  num_examples: Optional[int] = None   # unlimited
  arrays: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  device_resident: bool = True
  centered: bool = False
  x_range: Optional[Tuple[float, float]] = None   # unbounded: no clipping

  is_image = False

  def get_batch(self, arrays: Mapping[str, jax.Array], key: jax.Array,
                batch_size: int) -> jax.Array:
    """float32 [B, D] (pure, jittable; ``arrays`` is ignored)."""
    del arrays
    return self.sampler(key, batch_size).astype(jnp.float32)

  def preprocess(self, batch: jax.Array, key: jax.Array) -> jax.Array:
    """Identity: toy batches are already model data."""
    del key
    return jnp.asarray(batch, jnp.float32)

  def iterator(self, batch_size: int, seed: int, start_step: int = 0, process_index: int = 0,
               process_count: int = 1) -> BatchIterator:
    """float32 [B/P, D] batches: host p's slice of get_batch(fold_in(key(seed), step))."""
    _check_global_batch(batch_size, process_index, process_count)
    local = batch_size // process_count
    draw = jax.jit(self.get_batch, static_argnums=2)
    base = jax.random.key(seed)

    def load(step: int) -> np.ndarray:
      full = np.asarray(draw({}, jax.random.fold_in(base, step), batch_size))
      return full[process_index * local:(process_index + 1) * local]

    return BatchIterator(load, start_step)


Source = Any  # ImageSource | ToySource: the interface documented at the top.


# ----------------------------------------------------------------------------
# Constructors: one per dataset name, (data_cfg, split) -> Source.


def _get(cfg, field: str):
  default = _DEFAULTS[field]
  if field in ("image_size", "num_channels"):
    # A config that omits them (a plain dict in a notebook) gets the dataset's own.
    name = get_field(cfg, "dataset", _DEFAULTS["dataset"])
    info = _INFO.get(name.split("/")[0]) if isinstance(name, str) else None
    if info is not None and getattr(info, field) is not None:
      default = getattr(info, field)
  return get_field(cfg, field, default)


def _flags(cfg) -> Dict[str, bool]:
  flags = {}
  for field in ("centered", "uniform_dequantization", "random_flip", "device_resident"):
    value = _get(cfg, field)
    if not isinstance(value, (bool, np.bool_)):
      raise ConfigError(f"data.{field}={value!r} is not valid; it must be True or False.")
    flags[field] = bool(value)
  return flags


def _image_size(cfg) -> int:
  size = _get(cfg, "image_size")
  if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
    raise ConfigError(f"data.image_size={size!r} is not valid; it must be an integer > 0.")
  return size


def _check_channels(cfg, name: str, channels: int) -> None:
  value = _get(cfg, "num_channels")
  if value != channels:
    raise ConfigError(f"data.num_channels={value!r} does not match data.dataset={name!r}, "
                      f"which has {channels} channel{'s' if channels > 1 else ''}; set "
                      f"data.num_channels={channels}.")


def _image_source(name, split, images, cfg, flags) -> ImageSource:
  return ImageSource(
      name=name, split=split, shape=tuple(images.shape[1:]), num_examples=images.shape[0],
      arrays={"images": images}, device_resident=flags["device_resident"],
      centered=flags["centered"], uniform_dequantization=flags["uniform_dequantization"],
      random_flip=flags["random_flip"])


def _make_digits(cfg, split: str) -> ImageSource:
  flags = _flags(cfg)
  _check_channels(cfg, "digits", 1)
  images = files.load_digits(split, _image_size(cfg))
  return _image_source("digits", split, images, cfg, flags)


def _make_cifar10_sample(cfg, split: str) -> ImageSource:
  flags = _flags(cfg)
  _check_channels(cfg, "cifar10_sample", 3)
  images = files.load_cifar10_sample(split, _get(cfg, "data_dir"), _image_size(cfg))
  return _image_source("cifar10_sample", split, images, cfg, flags)


def _make_npz(cfg, split: str) -> ImageSource:
  flags = _flags(cfg)
  images = files.load_npz(split, _get(cfg, "data_dir"), _image_size(cfg),
                          _get(cfg, "num_channels"))
  return _image_source("npz", split, images, cfg, flags)


def _fit_images(images: np.ndarray, size: int) -> np.ndarray:
  """[N, H, W, C] -> [N, size, size, C] at load time.

  28x28 MNIST / Fashion-MNIST: kept at 28, zero-padded to 32 (2 px each side,
  exact pixel values, as LeNet did), resized (antialiased bilinear) otherwise.
  Other sets: resize the shorter side to ``size`` and centre crop.
  """
  h, w = images.shape[1:3]
  if (h, w) == (size, size):
    return images
  if (h, w) == (28, 28) and size == 32:
    return np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))
  return np.stack([transforms.fit_square(im, size) for im in images])


def _make_tfds_in_memory(name: str, cfg, split: str) -> ImageSource:
  """mnist / fashion_mnist / cifar10: the whole split decoded into host memory."""
  flags = _flags(cfg)
  info = _INFO[name]
  _check_channels(cfg, name, info.num_channels)
  size = _image_size(cfg)
  builder = tfds_sources.get_builder(name, info.tfds_name, _get(cfg, "tfds_data_dir"))
  images = tfds_sources.load_split(builder, name, split)
  return _image_source(name, split, _fit_images(images, size), cfg, flags)


def _make_tfds_stream(name: str, cfg, split: str) -> ImageSource:
  """celeb_a / celeb_a_hq[/R] / lsun/<category>: random access, host decoding."""
  flags = _flags(cfg)
  base = _check_name(name)
  _check_channels(cfg, name, 3)
  size = _image_size(cfg)
  if base == "celeb_a":
    tfds_name, fit = "celeb_a", functools.partial(transforms.crop_then_resize,
                                                  crop=CELEBA_CROP, size=size)
  elif base == "celeb_a_hq":
    # The tfds config of the requested size when there is one, else 1024 px.
    res = int(name.split("/")[1]) if "/" in name else (
        size if size in CELEBA_HQ_RESOLUTIONS else 1024)
    tfds_name, fit = f"celeb_a_hq/{res}", functools.partial(transforms.fit_square, size=size)
  else:  # lsun/<category>: shorter side -> size, centre crop (score_sde, DDPM)
    tfds_name, fit = name, functools.partial(transforms.resize_shorter_then_crop, size=size)
  builder = tfds_sources.get_builder(name, tfds_name, _get(cfg, "tfds_data_dir"))
  data_source = tfds_sources.open_data_source(builder, name, split)

  def read(indices: np.ndarray) -> np.ndarray:
    records = tfds_sources.read_records(data_source, indices)
    return np.stack([fit(np.asarray(r["image"], np.uint8)) for r in records])

  return ImageSource(
      name=name, split=split, shape=(size, size, 3), num_examples=len(data_source),
      arrays={}, device_resident=False, centered=flags["centered"],
      uniform_dequantization=flags["uniform_dequantization"],
      random_flip=flags["random_flip"], read=read, threads=STREAM_THREADS)


def mixture_params(cfg) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Validated (weights [K], means [K, D], stds [K]) from data.mixture_*."""
  try:
    weights = np.asarray(_get(cfg, "mixture_weights"), np.float64)
    means = np.asarray(_get(cfg, "mixture_means"), np.float64)
    stds = np.asarray(_get(cfg, "mixture_stds"), np.float64)
  except (TypeError, ValueError) as e:
    raise ConfigError(f"data.mixture_weights/means/stds must be numbers ({e}).") from e
  if weights.ndim != 1 or not weights.size or np.any(weights < 0) or weights.sum() <= 0:
    raise ConfigError(f"data.mixture_weights={tuple(weights.ravel())!r} is not valid; it must "
                      "be non-negative numbers with a positive sum.")
  k = weights.size
  if means.ndim != 2 or means.shape[0] != k:
    raise ConfigError(f"data.mixture_means has shape {means.shape}; it must be [K, D] with "
                      f"K={k} (one mean per weight).")
  if stds.shape != (k,) or np.any(stds <= 0):
    raise ConfigError(f"data.mixture_stds={tuple(stds.ravel())!r} is not valid; it must be "
                      f"{k} positive numbers (one isotropic std per component).")
  return weights, means, stds


def _make_toy(name: str, cfg, split: str) -> ToySource:
  if name == "mixture":
    weights, means, stds = mixture_params(cfg)
    return ToySource(name=name, split=split, sampler=toy.gaussian_mixture(weights, means, stds),
                     shape=(means.shape[1],))
  return ToySource(name=name, split=split, sampler=toy.TOY_SAMPLERS[name])


def _make_by_full_name(cfg, split: str) -> ImageSource:
  """celeb_a_hq[/R] and lsun/<category>: the constructor needs the full name."""
  return _make_tfds_stream(_get(cfg, "dataset"), cfg, split)


# Plain dict, name -> constructor(data_cfg, split). 'lsun' serves 'lsun/<category>'.
DATASETS: Dict[str, Callable[[Any, str], Any]] = {
    "digits": _make_digits,
    "mnist": functools.partial(_make_tfds_in_memory, "mnist"),
    "fashion_mnist": functools.partial(_make_tfds_in_memory, "fashion_mnist"),
    "cifar10": functools.partial(_make_tfds_in_memory, "cifar10"),
    "cifar10_sample": _make_cifar10_sample,
    "npz": _make_npz,
    "celeb_a": functools.partial(_make_tfds_stream, "celeb_a"),
    "celeb_a_hq": _make_by_full_name,
    "lsun": _make_by_full_name,
    "swiss_roll": functools.partial(_make_toy, "swiss_roll"),
    "mixture": functools.partial(_make_toy, "mixture"),
    "eight_gaussians": functools.partial(_make_toy, "eight_gaussians"),
    "checkerboard": functools.partial(_make_toy, "checkerboard"),
}


def make_source(data_cfg, split: str = "train"):
  """Builds the source that ``data_cfg.dataset`` names (see module docstring).

  Args:
    data_cfg: ``config.data`` (fields missing from it take configs/base.py's defaults).
    split: ``"train"``, ``"test"``, ... (tfds split syntax works for tfds sets).

  Returns:
    An :class:`ImageSource` or :class:`ToySource`.

  Raises:
    ConfigError: unknown dataset, a value that does not fit the dataset, or
      data that is not on disk (never a download attempt).
  """
  name = _get(data_cfg, "dataset")
  base = _check_name(name)
  return DATASETS[base](data_cfg, split)


def check_config(data_cfg) -> None:
  """Validates ``config.data`` without reading any file (ConfigError, one line).

  Checks the dataset name, the boolean flags, data.image_size, data.num_channels
  against datasets with a fixed channel count, digits' sizes and the mixture.
  Missing data is only detected by :func:`make_source`.
  """
  name = _get(data_cfg, "dataset")
  base = _check_name(name)
  _flags(data_cfg)
  info = _INFO[base]
  if info.kind == "toy":
    if base == "mixture":
      mixture_params(data_cfg)
    return
  size = _image_size(data_cfg)
  channels = 3 if base in ("celeb_a_hq", "lsun") else info.num_channels
  if channels is not None:
    _check_channels(data_cfg, name, channels)
  else:
    check_positive("data.num_channels", _get(data_cfg, "num_channels"))
  if base == "digits" and size not in files.DIGITS_SIZES:
    raise ConfigError(f"data.image_size={size!r} is not valid for data.dataset='digits'; "
                      f"choose one of {', '.join(map(str, files.DIGITS_SIZES))}.")

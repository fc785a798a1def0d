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

from diffusion.config import catalog
from diffusion.config import DataConfig
from diffusion.data import files
from diffusion.data import tfds_sources
from diffusion.data import toy
from diffusion.data import transforms
from diffusion.errors import ConfigError

CELEBA_CROP = 140        # CelebA: centre crop 140 px, then resize (NCSN, DDIM, score_sde)
STREAM_THREADS = 4       # host threads decoding batches ahead of a streaming consumer


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
    arrays: ``{"images": uint8 [N, H, W, C]}`` (and ``"labels"``: int32 [N] where the
      dataset has classes) for in-memory sets, else {}.
    device_resident: True when the trainer should put ``arrays`` on the device
      and call :meth:`get_batch` (in-memory set and ``data.device_resident``).
    centered, uniform_dequantization, random_flip, binarize: the preprocessing flags.
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
  binarize: bool = False
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
        uniform_dequantization=self.uniform_dequantization, random_flip=self.random_flip,
        binarize=self.binarize)

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

  def batch_fn(self, batch_size: int) -> Callable[[Any, jax.Array], jax.Array]:
    """``get_batch(data, key)`` of the training step, for either way of feeding it.

    Device-resident: ``data`` is ``arrays`` and B examples are drawn from it;
    streamed: ``data`` is one host uint8 batch from :meth:`iterator`, preprocessed.
    """
    if self.device_resident:
      return lambda arrays, key: self.get_batch(arrays, key, batch_size)
    return self.preprocess

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

  def batch_fn(self, batch_size: int) -> Callable[[Any, jax.Array], jax.Array]:
    """``get_batch(data, key)`` of the training step (see ImageSource.batch_fn)."""
    if self.device_resident:
      return lambda arrays, key: self.get_batch(arrays, key, batch_size)
    return self.preprocess

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
# Constructors: one per dataset name, (DataConfig, split) -> Source.


def _image_source(name: str, split: str, images: np.ndarray, d: DataConfig,
                  labels: Optional[np.ndarray] = None) -> ImageSource:
  arrays = {"images": images}
  if labels is not None:
    arrays["labels"] = labels
  return ImageSource(
      name=name, split=split, shape=tuple(images.shape[1:]), num_examples=images.shape[0],
      arrays=arrays, device_resident=d.device_resident, centered=d.centered,
      uniform_dequantization=d.uniform_dequantization, random_flip=d.random_flip,
      binarize=d.binarize == "dynamic")


def _make_digits(d: DataConfig, split: str) -> ImageSource:
  return _image_source("digits", split, files.load_digits(split, d.image_size), d,
                       files.load_digits_labels(split))


def _make_cifar10_sample(d: DataConfig, split: str) -> ImageSource:
  images = files.load_cifar10_sample(split, d.data_dir, d.image_size)
  return _image_source("cifar10_sample", split, images, d,
                       files.load_cifar10_sample_labels(split, d.data_dir))


def _make_npz(d: DataConfig, split: str) -> ImageSource:
  return _image_source("npz", split, files.load_npz(split, d.data_dir, d.image_size,
                                                    d.num_channels), d)


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


def _make_tfds_in_memory(d: DataConfig, split: str) -> ImageSource:
  """mnist / fashion_mnist / cifar10: the whole split decoded into host memory."""
  name = catalog.base_name(d.dataset)
  info = catalog.INFO[name]
  builder = tfds_sources.get_builder(name, info.tfds_name, d.tfds_data_dir)
  arrays = tfds_sources.load_split(builder, name, split)
  return _image_source(name, split, _fit_images(arrays["images"], d.image_size), d,
                       arrays.get("labels"))


def _make_tfds_stream(d: DataConfig, split: str) -> ImageSource:
  """celeb_a / celeb_a_hq[/R] / lsun/<category>: random access, host decoding."""
  name, size = d.dataset, d.image_size
  base = catalog.base_name(name)
  if base == "celeb_a":
    tfds_name, fit = "celeb_a", functools.partial(transforms.crop_then_resize,
                                                  crop=CELEBA_CROP, size=size)
  elif base == "celeb_a_hq":
    # The tfds config of the requested size when there is one, else 1024 px.
    res = int(name.split("/")[1]) if "/" in name else (
        size if size in catalog.CELEBA_HQ_RESOLUTIONS else 1024)
    tfds_name, fit = f"celeb_a_hq/{res}", functools.partial(transforms.fit_square, size=size)
  else:  # lsun/<category>: shorter side -> size, centre crop (score_sde, DDPM)
    tfds_name, fit = name, functools.partial(transforms.resize_shorter_then_crop, size=size)
  builder = tfds_sources.get_builder(name, tfds_name, d.tfds_data_dir)
  data_source = tfds_sources.open_data_source(builder, name, split)

  def read(indices: np.ndarray) -> np.ndarray:
    records = tfds_sources.read_records(data_source, indices, name)
    return np.stack([fit(np.asarray(r["image"], np.uint8)) for r in records])

  return ImageSource(
      name=name, split=split, shape=(size, size, 3), num_examples=len(data_source),
      arrays={}, device_resident=False, centered=d.centered,
      uniform_dequantization=d.uniform_dequantization, random_flip=d.random_flip,
      binarize=d.binarize == "dynamic", read=read, threads=STREAM_THREADS)


def mixture_params(d: DataConfig) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(weights [K], means [K, D], stds [K]) float64 from the typed data.mixture_*."""
  return (np.asarray(d.mixture_weights, np.float64), np.asarray(d.mixture_means, np.float64),
          np.asarray(d.mixture_stds, np.float64))


def _make_toy(d: DataConfig, split: str) -> ToySource:
  if d.dataset == "mixture":
    weights, means, stds = mixture_params(d)
    return ToySource(name=d.dataset, split=split,
                     sampler=toy.gaussian_mixture(weights, means, stds), shape=(means.shape[1],))
  return ToySource(name=d.dataset, split=split, sampler=toy.TOY_SAMPLERS[d.dataset])


# Plain dict, catalog reader -> constructor(DataConfig, split) of a source.
READERS: Dict[str, Callable[[DataConfig, str], Any]] = {
    "digits": _make_digits,
    "tfds": _make_tfds_in_memory,
    "tfds_stream": _make_tfds_stream,
    "files": _make_cifar10_sample,
    "npz": _make_npz,
    "toy": _make_toy,
}
# Base name -> constructor, derived from the catalog (its one list of dataset names).
# 'lsun' serves 'lsun/<category>'.
DATASETS: Dict[str, Callable[[DataConfig, str], Any]] = {
    name: READERS[info.reader] for name, info in catalog.INFO.items()}


def make_source(data_cfg=None, split: str = "train"):
  """Builds the source that ``data_cfg.dataset`` names (see module docstring).

  Args:
    data_cfg: ``config.data`` (ConfigDict, dict or DataConfig); fields left out take
      the defaults of :class:`diffusion.config.DataConfig`, with the dataset's own
      image size and channel count.
    split: ``"train"``, ``"test"``, ... (tfds split syntax works for tfds sets).

  Returns:
    An :class:`ImageSource` or :class:`ToySource`.

  Raises:
    ConfigError: unknown dataset, a value that does not fit the dataset, or
      data that is not on disk (never a download attempt).
  """
  d = DataConfig.parse(data_cfg)
  return DATASETS[catalog.base_name(d.dataset)](d, split)


def check_config(data_cfg) -> DataConfig:
  """Validates ``config.data`` without reading any file; returns it typed (ConfigError
  with one line otherwise). Missing data is only detected by :func:`make_source`."""
  return DataConfig.parse(data_cfg)

"""tensorflow-datasets access: the prepared-data check, reading, offline prepare.

Rules this module keeps:

* ``tensorflow`` / ``tensorflow_datasets`` are imported inside functions only.
* Training never downloads. Before any tfds read we check that the dataset is
  prepared under the data dir and otherwise raise :class:`ConfigError` at once
  (a tfds download attempt without network hangs for minutes before failing).
  Downloading or building happens only in :func:`prepare`
  (``python -m diffusion.data prepare NAME``).
* :func:`prepare` writes ``array_record`` files, which tfds reads by random
  access (``builder.as_data_source``) without TensorFlow, and which the light core
  (no tfds installed) reads with :mod:`diffusion.data.prepared`; building needs TF.
  Data prepared elsewhere in ``tfrecord`` format is still read for the
  in-memory datasets (through tf.data), but streaming needs random access.
* With ``--manual_dir`` the raw files come from disk (tfds's download manager
  takes a file from ``manual_dir`` when its registered checksum lists that file
  name, e.g. the four MNIST IDX ``.gz`` files) and every network connection is
  refused for the duration, so a missing file fails at once instead of hanging.
"""

import contextlib
import io
import os
import pathlib
import shutil
import socket
import sys
import tempfile
import threading
import time
from typing import Iterator, List, Optional, Sequence
from unittest import mock

import numpy as np

from diffusion import extras
from diffusion.data import prepared
from diffusion.errors import ConfigError

# Raw files tfds's builders fetch, by our dataset name; --manual_dir must hold
# them under these names (checked before tfds runs, so nothing is downloaded).
MANUAL_FILES = {
    "mnist": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    "fashion_mnist": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                      "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    "cifar10": ("cifar-10-binary.tar.gz",),
}

_MANUAL_HINT = {
    "mnist": "the four official IDX .gz files, train-images-idx3-ubyte.gz ...",
    "fashion_mnist": "the four official IDX .gz files, train-images-idx3-ubyte.gz ...",
    "cifar10": "cifar-10-binary.tar.gz",
    "celeb_a": "img_align_celeba.zip and the list_*.txt files",
    "celeb_a_hq": "the data<R>x<R>.tar files tfds's celeb_a_hq describes",
    "lsun": "<category>_train_lmdb.zip and <category>_val_lmdb.zip",
}


def _base(name: str) -> str:
  return name.split("/")[0]


def prepare_command(name: str, data_dir: str = "") -> str:
  """The one-line shell command that prepares ``name`` (for error messages)."""
  extra = f" --data_dir {data_dir}" if data_dir else ""
  return f"python -m diffusion.data prepare {name}{extra}"


def not_prepared_message(name: str, where: str, data_dir: str = "") -> str:
  cmd = prepare_command(name, data_dir)
  hint = _MANUAL_HINT.get(_base(name), "the downloaded archives")
  return (f"data.dataset={name!r}: no prepared data under {where}; prepare it offline with "
          f"`{cmd} --manual_dir DIR` (DIR holding {hint}) or run `{cmd}` once with "
          "network access.")


def get_builder(name: str, tfds_name: str, data_dir: str):
  """tfds builder for a *prepared* dataset, else ConfigError (no download ever); without
  tfds installed (the light core), the prepared folder read by :mod:`diffusion.data.prepared`.

  Args:
    name: our dataset name (for messages), e.g. ``mnist`` or ``lsun/church_outdoor``.
    tfds_name: tfds's name with config, e.g. ``celeb_a_hq/256``.
    data_dir: ``data.tfds_data_dir``; "" means tfds's default directory.
  """
  try:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  except ImportError:   # the light core reads prepared array_record data itself
    found = prepared.version_dir(tfds_name, data_dir)
    if found is None:
      where = (pathlib.Path(data_dir).expanduser() if data_dir
               else prepared.default_data_dir()) / tfds_name
      raise ConfigError(not_prepared_message(name, str(where), data_dir) + " Preparing "
                        "needs the tfds extra: pip install '.[tfds]'.") from None
    return prepared.PreparedDataset(found)
  builder = tfds.builder(tfds_name, data_dir=data_dir or None)
  if not builder.is_prepared():
    raise ConfigError(not_prepared_message(name, str(builder.data_dir), data_dir))
  return builder


def open_data_source(builder, name: str, split: str):
  """Random-access view of one split (array_record; no TensorFlow needed)."""
  try:
    return builder.as_data_source(split=split)
  except NotImplementedError as e:  # tfrecord: no random access
    raise ConfigError(
        f"data.dataset={name!r}: the data under {builder.data_dir} is stored as "
        f"{builder.info.file_format}, which has no random access; convert it once with "
        f"`tfds convert_format --dataset_version_dir={builder.data_dir} "
        "--out_file_format=array_record`, or re-prepare it with "
        f"`{prepare_command(name)} --data_dir NEW_DIR`.") from e
  except (KeyError, ValueError) as e:
    raise ConfigError(f"data.split={split!r} is not a split of data.dataset={name!r} "
                      f"({e}).") from e


def read_records(data_source, indices: Sequence[int], name: str = "") -> List[dict]:
  """Decoded examples (dicts of numpy arrays) at ``indices``; a damaged (e.g. truncated)
  array_record file is a ConfigError naming ``name`` and the command that re-prepares it."""
  indices = [int(i) for i in indices]
  try:
    try:
      return data_source.__getitems__(indices)   # batched read, ~2x faster
    except (TypeError, AttributeError):
      # tfds.testing.mock_data's data sources only implement __getitem__.
      return [data_source[i] for i in indices]
  except RuntimeError as e:
    if "riegeli" not in str(e).lower() and "array_record" not in str(e).lower():
      raise
    raise ConfigError(
        f"data.dataset={name or '?'!r}: its prepared array_record files are damaged "
        f"({str(e).splitlines()[0][:100]}); delete the dataset's folder under the tfds data "
        f"dir and run `{prepare_command(name or 'NAME')}` again.") from None


def load_split(builder, name: str, split: str, chunk: int = 10_000) -> dict:
  """Every example of a split in stored order (host memory): ``{"images": uint8
  [N, H, W, C], "labels": int32 [N]}`` (labels when the dataset has them)."""
  try:
    source = builder.as_data_source(split=split)
  except NotImplementedError:
    return _load_split_tf(builder, split)
  except (KeyError, ValueError) as e:
    raise ConfigError(f"data.split={split!r} is not a split of data.dataset={name!r} "
                      f"({e}).") from e
  n = len(source)
  images, labels = [], []
  for start in range(0, n, chunk):
    records = read_records(source, range(start, min(n, start + chunk)), name)
    images.append(np.stack([np.asarray(r["image"], np.uint8) for r in records]))
    if records and "label" in records[0]:
      labels.append(np.asarray([r["label"] for r in records], np.int32))
  out = {"images": np.concatenate(images)}
  if labels:
    out["labels"] = np.concatenate(labels)
  return out


def _load_split_tf(builder, split: str) -> dict:
  """tfrecord fallback (data prepared by plain tfds): read through tf.data."""
  tfds = extras.require("tensorflow_datasets")  # heavy, optional: the tfds extra
  ds = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
  out = {"images": np.asarray(ds["image"], np.uint8)}
  if "label" in ds:
    out["labels"] = np.asarray(ds["label"], np.int32)
  return out


# ----------------------------------------------------------------------------
# Offline preparation


@contextlib.contextmanager
def no_network() -> Iterator[None]:
  """Makes every socket connection and DNS lookup fail at once in this process."""

  def refuse(*args, **kwargs):
    del args, kwargs
    raise OSError("network access is disabled while preparing from --manual_dir")

  saved = (socket.socket.connect, socket.socket.connect_ex, socket.create_connection,
           socket.getaddrinfo)
  socket.socket.connect = refuse
  socket.socket.connect_ex = refuse
  socket.create_connection = refuse
  socket.getaddrinfo = refuse
  try:
    yield
  finally:
    (socket.socket.connect, socket.socket.connect_ex, socket.create_connection,
     socket.getaddrinfo) = saved


@contextlib.contextmanager
def _refuse_downloads(name: str, manual_dir: str) -> Iterator[None]:
  """Turns any file tfds would download into an immediate ConfigError.

  Without this, tfds's download retries with back-off take ~3.5 minutes to give
  up even when every connection is refused at once.
  """
  tfds = extras.require("tensorflow_datasets")  # heavy, optional: the tfds extra

  def refuse(self, resource):
    del self
    url = getattr(resource, "url", resource)
    raise ConfigError(f"--manual_dir={manual_dir!r} lacks {str(url).rsplit('/', 1)[-1]!r} "
                      f"(from {url}), needed to build {name} offline; nothing was downloaded.")

  # pylint: disable-next=protected-access
  with mock.patch.object(tfds.download.DownloadManager, "_download", refuse):
    yield


def _remove_leftovers(root: pathlib.Path, dataset_dir: pathlib.Path) -> None:
  """Removes what a killed prepare left: ``tmp_downloads_*`` under the data dir and
  tfds's ``incomplete.*`` folders beside the dataset's versions."""
  for stale in [*root.glob("tmp_downloads_*"), *dataset_dir.glob("incomplete.*")]:
    if stale.is_dir():
      shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def _quiet_build(tfds, what: str) -> Iterator[None]:
  """While tfds builds: its prints, bars and TensorFlow's C++ logs (file descriptors 1 and
  2) go to a buffer, shown only if the build fails with an error that is not ours; a
  line on the real stderr shows the time spent (tfds's own bars showed 0-byte downloads
  at 86,526,516 MiB/s and ~100 lines for MNIST)."""
  tfds.disable_progress_bar()
  sys.stdout.flush()
  sys.stderr.flush()
  saved = {fd: os.dup(fd) for fd in (1, 2)}
  shown = os.fdopen(os.dup(saved[2]), "w")
  stop = threading.Event()

  def tick():
    start = time.time()
    while not stop.wait(1.0):
      shown.write(f"\r{what}: {time.time() - start:.0f} s")
      shown.flush()
    shown.write("\r" + " " * (len(what) + 12) + "\r")
    shown.flush()

  ticker = threading.Thread(target=tick, daemon=True) if shown.isatty() else None
  with tempfile.TemporaryFile() as buffer, contextlib.redirect_stdout(io.StringIO()) as out:
    for fd in (1, 2):
      os.dup2(buffer.fileno(), fd)
    if ticker is not None:
      ticker.start()
    failed = None
    try:
      yield
    except ConfigError:
      raise
    except BaseException as e:
      failed = e
      raise
    finally:
      stop.set()
      if ticker is not None:
        ticker.join(timeout=2)
      sys.stdout.flush()
      sys.stderr.flush()
      for fd, dup in saved.items():
        os.dup2(dup, fd)
        os.close(dup)
      if failed is not None and not isinstance(failed, KeyboardInterrupt):
        buffer.seek(0)
        sys.stderr.write(out.getvalue() + buffer.read().decode(errors="replace")[-4000:])
      shown.close()


def split_sizes(path: pathlib.Path) -> str:
  """'train 60,000, test 10,000' from a prepared version folder's dataset_info.json."""
  info = prepared.PreparedDataset(path).info
  return ", ".join(f"{name} {sum(lengths):,}" for name, (_, lengths) in info.splits.items())


def prepare(name: str, tfds_name: str, manual_dir: Optional[str] = None,
            data_dir: Optional[str] = None) -> pathlib.Path:
  """Builds ``tfds_name`` as array_record under ``data_dir``.

  Args:
    name: our dataset name (``mnist``, ``fashion_mnist``, ``cifar10``, ...).
    tfds_name: tfds's name with config.
    manual_dir: folder with the raw files (byte-identical to tfds's downloads).
      When given, the network is disabled for the whole build and the files
      tfds needs are checked first. When None, tfds downloads (needs network).
    data_dir: tfds data dir to write into; None/"" = tfds's default.

  Returns:
    The prepared dataset's version directory.
  """
  if manual_dir:
    folder = pathlib.Path(manual_dir).expanduser()
    if not folder.is_dir():
      raise ConfigError(f"--manual_dir={manual_dir!r} is not a folder.")
    missing = [f for f in MANUAL_FILES.get(_base(name), ()) if not (folder / f).is_file()]
    if missing:
      raise ConfigError(f"--manual_dir={manual_dir!r} lacks {', '.join(missing)} "
                        f"(needed to build {name} offline).")
  tfds = extras.require("tensorflow_datasets")  # heavy, optional: the tfds extra
  from tensorflow_datasets.core.download import download_manager  # heavy and optional: only tfds sets need it
  builder = tfds.builder(tfds_name, data_dir=data_dir or None, file_format="array_record")
  if builder.is_prepared():
    return pathlib.Path(str(builder.data_dir))
  if manual_dir:
    config = tfds.download.DownloadConfig(manual_dir=str(pathlib.Path(manual_dir).expanduser()))
    # Extraction products go to a temporary folder inside the data dir (same
    # disk as the output, which can be large for LSUN): only the records stay.
    root = pathlib.Path(data_dir or tfds.core.constants.get_default_data_dir()).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(root, pathlib.Path(str(builder.data_dir)).parent)
    with tempfile.TemporaryDirectory(prefix="tmp_downloads_", dir=root) as tmp, \
        _refuse_downloads(name, manual_dir), no_network(), \
        _quiet_build(tfds, f"{name}: building"):
      try:
        builder.download_and_prepare(download_dir=tmp, download_config=config)
      except download_manager.NonMatchingChecksumError as e:
        raise ConfigError(
            f"--manual_dir={manual_dir!r}: a file's checksum does not match tfds's record for "
            f"{name} ({str(e).splitlines()[0][:120]}); use the official, unmodified files.") from None
  else:
    with _quiet_build(tfds, f"{name}: downloading and building"):
      builder.download_and_prepare()
  return pathlib.Path(str(builder.data_dir))

"""Offline preparation of tfds datasets (``python -m diffusion.data prepare``).

The one command, for MNIST from the official IDX files already on disk::

  python -m diffusion.data prepare mnist --manual_dir DIR [--data_dir DIR]

(DIR: the folder with the four official IDX .gz files, train-images-idx3-ubyte.gz,
train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz;
``fashion_mnist`` likewise). It builds
tfds's own ``mnist`` 3.0.1 as array_record under DIR (default: tfds's
``~/tensorflow_datasets``), reading the four ``.gz`` files from ``--manual_dir``
— tfds's download manager takes a file from ``manual_dir`` when the file name
matches its registered checksum entry, and the checksum is verified — with the
network disabled, in about 10 s. Training then reads it with
``data.tfds_data_dir=DIR`` (or the default) without TensorFlow.

Without ``--manual_dir`` the same command downloads (needs network access).
"""

import pathlib
from typing import Optional

from diffusion.config import catalog
from diffusion.data import tfds_sources


def tfds_name_for(name: str) -> Optional[str]:
  """tfds's name for ``data.dataset`` (None when the set needs no preparation)."""
  base = catalog.base_name(name)
  info = catalog.dataset_info(name)
  if info.tfds_name is None:
    return None
  if base in ("lsun", "celeb_a_hq"):
    return name if "/" in name else info.tfds_name
  return info.tfds_name


def prepare_dataset(name: str, manual_dir: Optional[str] = None,
                    data_dir: Optional[str] = None) -> Optional[pathlib.Path]:
  """Builds dataset ``name`` for tfds; returns its directory (None: nothing to do).

  Args:
    name: a ``data.dataset`` value: mnist, fashion_mnist, cifar10, celeb_a,
      celeb_a_hq[/R] (default 256), lsun/<category>.
    manual_dir: folder with the raw downloads; the network is then disabled.
    data_dir: tfds data dir to write; None = tfds's default.

  Raises:
    ConfigError: unknown name, missing raw files, or a file tfds would download.
  """
  tfds_name = tfds_name_for(name)
  if tfds_name is None:
    return None
  return tfds_sources.prepare(name, tfds_name, manual_dir=manual_dir, data_dir=data_dir)

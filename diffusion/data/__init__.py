"""Data: image datasets and toy distributions as device-ready batches.

``make_source(config.data, split)`` returns a source whose batches are float32
model data — [B, H, W, C] images in [-1, 1] (``data.centered``) or [0, 1], or
[B, 2] toy points. In-memory sets are drawn on the device inside the jitted
step (``source.get_batch(arrays, key, batch_size)``); large sets stream from the
host (``source.iterator(...)`` + ``source.preprocess``). See
:mod:`diffusion.data.sources` for the batch-order rules, and
``python -m diffusion.data --help`` for offline preparation of tfds datasets.

Dataset names (``data.dataset``): digits, mnist, fashion_mnist, cifar10,
cifar10_sample, npz, celeb_a, celeb_a_hq[/R], lsun/<category>, swiss_roll,
mixture, eight_gaussians, checkerboard.

Importing this package is light: tensorflow / tensorflow_datasets load only
when a tfds dataset is opened or prepared.
"""

from diffusion.data.sources import (
    DATASETS,
    BatchIterator,
    DatasetInfo,
    ImageSource,
    ToySource,
    batch_indices,
    check_config,
    dataset_info,
    epoch_permutation,
    make_source,
    mixture_params,
)
from diffusion.data.prepare import prepare_dataset
from diffusion.data.transforms import data_range, preprocess, to_uint8

__all__ = [
    "DATASETS", "BatchIterator", "DatasetInfo", "ImageSource", "ToySource", "batch_indices",
    "check_config", "dataset_info", "mixture_params", "epoch_permutation", "make_source", "data_range",
    "preprocess", "to_uint8", "prepare_dataset",
]


"""Data: image datasets and toy distributions as device-ready batches.

``make_source(config.data, split)`` returns a source whose batches are float32
model data — [B, H, W, C] images in [-1, 1] (``data.centered``) or [0, 1], or
[B, D] toy points. The training step draws a batch with
``source.batch_fn(batch_size)(data, key)``: for in-memory sets ``data`` is the
uint8 arrays already on the device and the batch is drawn inside the compiled
step; for large sets ``data`` is a host batch from ``source.iterator(...)``. See
:mod:`diffusion.data.sources` for the batch-order rules, and
``python -m diffusion.data --help`` for offline preparation of tfds datasets.

Dataset names (``data.dataset``) and their sizes are in :mod:`diffusion.config.catalog`.
Importing this package is light: tensorflow / tensorflow_datasets load only
when a tfds dataset is opened or prepared.
"""

from diffusion.config.catalog import DatasetInfo, dataset_info
from diffusion.data.prepare import prepare_dataset
from diffusion.data.sources import (
    DATASETS,
    BatchIterator,
    ImageSource,
    ToySource,
    batch_indices,
    check_config,
    epoch_permutation,
    make_source,
    mixture_params,
)
from diffusion.data.transforms import data_range, fixed_binarization, preprocess, to_uint8

__all__ = [
    "DATASETS", "BatchIterator", "DatasetInfo", "ImageSource", "ToySource", "batch_indices",
    "check_config", "dataset_info", "mixture_params", "epoch_permutation", "make_source",
    "data_range", "fixed_binarization", "preprocess", "to_uint8", "prepare_dataset",
]

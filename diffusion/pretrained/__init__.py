"""The papers' own weights: import DDPM's released checkpoints as runs, export runs to PyTorch.

  python -m diffusion.pretrained import SRC --workdir=DIR [--config=FILE] [--raw]
  python -m diffusion.pretrained export --workdir=DIR --out=OUT [--checkpoint_step=N]

``import`` reads a diffusers folder of a DDPM-family ``UNet2DModel`` (google/ddpm-cifar10-32,
google/ddpm-{celebahq,church,bedroom,cat}-256 and their ``ddpm-ema-*`` twins; safetensors
or a torch pickle, read without torch) or one of the DDPM authors' TensorFlow
checkpoints (read without TensorFlow), and writes an ordinary run: ``sample.py``, the
evaluators, ``diffusion.load(DIR)`` and ``train.py`` use it unchanged. ``export`` writes
a run's EMA weights as a diffusers folder.

  network.py    UNetSpec (a release's sizes), our parameter tree as named leaves, WeightsError
  diffusers.py  UNet2DModel config and state dict <-> ours (both attention-name generations)
  ddpm_tf.py    a reader of TF checkpoints (index table + data shards, CRC32C) and DDPM's names
  importer.py   import_weights: the release's config, the checked weights, the run (atomic)
  export.py     export_run: config.json + safetensors (+ scheduler_config.json)
"""

from diffusion.pretrained.export import export_run
from diffusion.pretrained.importer import import_weights
from diffusion.pretrained.network import UNetSpec, WeightsError

__all__ = ["UNetSpec", "WeightsError", "export_run", "import_weights"]

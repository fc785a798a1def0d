"""Released weights by name: a Hugging Face hub id (``google/ddpm-cifar10-32``) as SRC.

``python -m diffusion.pretrained import google/ddpm-cifar10-32 --workdir=DIR``: when SRC
is no file or folder here but looks like ``owner/name``, :func:`fetch` gets the U-Net's
``config.json`` and weights (and the scheduler's config) with ``huggingface_hub`` (the
``hub`` extra): from the hub when a network is there, else from its cache
(``HF_HUB_OFFLINE=1`` uses the cache only; ``HF_HUB_CACHE`` or ``HF_HOME`` move it). When
neither works, one line says what to download and where to put it. The import then reads
the cached folder as any diffusers folder.
"""

import importlib
import os
import re
from typing import Optional

from diffusion import extras
from diffusion.errors import ConfigError
from diffusion.io.bars import announce
from diffusion.pretrained import diffusers

# owner/name as the hub spells repository ids.
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")

# The files of a diffusers U-Net, at the top of the repository or in unet/ (a pipeline).
_CONFIGS = ["config.json", "scheduler_config.json", "model_index.json", "unet/config.json",
            "scheduler/scheduler_config.json"]
_SAFETENSORS = ["diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.safetensors"]
_PICKLE = ["diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.bin"]


def is_hub_id(src: str) -> bool:
  """Whether ``src`` names a hub repository: ``owner/name``, and no file or folder here."""
  return (not os.path.exists(src) and not os.path.exists(src + ".index")
          and _HUB_ID.fullmatch(src) is not None)


def _by_hand(repo_id: str) -> str:
  name = repo_id.split("/")[-1]
  return (f"download config.json and diffusion_pytorch_model.safetensors (or .bin; in unet/ "
          f"for a pipeline) from https://huggingface.co/{repo_id} into a folder, e.g. "
          f"weights/{name}, and run: python -m diffusion.pretrained import weights/{name} "
          "--workdir=DIR")


def fetch(repo_id: str) -> str:
  """The local folder of ``repo_id``'s U-Net files (the hub's cache), downloading them
  when a network is there; ConfigError naming what to download by hand otherwise."""
  try:
    hub = extras.require("huggingface_hub")
  except ConfigError:
    raise ConfigError(f"{repo_id} is no file or folder here; to fetch it by name install "
                      f"the hub extra (pip install '.[hub]'), or {_by_hand(repo_id)}.") from None
  constants = importlib.import_module("huggingface_hub.constants")
  where = ("its cache (HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE
           else "the Hugging Face hub, or its cache")
  announce(f"{repo_id}: getting config.json and the weights from {where}: "
           f"{constants.HF_HUB_CACHE}")
  try:
    folder = hub.snapshot_download(repo_id, allow_patterns=_CONFIGS + _SAFETENSORS)
    if diffusers.find_folder(folder) is None:   # no safetensors: the release's torch pickle
      folder = hub.snapshot_download(repo_id, allow_patterns=_CONFIGS + _PICKLE)
  except Exception as e:  # noqa: BLE001 - offline, unknown repository, no network, ...
    raise ConfigError(f"{repo_id}: could not get it from the Hugging Face hub nor its cache "
                      f"({_reason(e)}); {_by_hand(repo_id)}.") from None
  if diffusers.find_folder(folder) is None:
    raise ConfigError(f"{repo_id} (in {folder}) holds no diffusers U-Net (config.json with "
                      "diffusion_pytorch_model.safetensors or .bin); "
                      f"{_by_hand(repo_id)}.")
  return folder


def _reason(e: Exception) -> str:
  """The exception's first sentence (hub errors run to paragraphs)."""
  text = (str(e).strip().splitlines() or [type(e).__name__])[0]
  return f"{type(e).__name__}: {text.split('. ')[0][:160].rstrip('.')}"


def cached_name(folder: str) -> Optional[str]:
  """``owner/name`` of a hub cache snapshot folder (…/models--owner--name/snapshots/<rev>),
  or None."""
  parts = os.path.abspath(folder).split(os.sep)
  for part in reversed(parts):
    if part.startswith("models--"):
      return part[len("models--"):].replace("--", "/", 1)
  return None

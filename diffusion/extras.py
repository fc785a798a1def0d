"""Optional packages, imported only by the function that needs them.

The light core (``pip install .``) trains, samples and evaluates on built-in and prepared
data; TensorFlow Datasets, Ray, Optuna and matplotlib come with extras. A missing one is one
line naming the extra to install (``ConfigError``, printed as ``error: ...``).
"""

import importlib

from diffusion.errors import ConfigError

# module -> (the extra of pyproject.toml that installs it, what needs it)
EXTRAS = {
    "tensorflow_datasets": ("tfds", "preparing tfds datasets (MNIST, CIFAR-10, ...)"),
    "ray": ("ray", "--sweep_mode=ray"),
    "optuna": ("sweeps", "--search (Optuna's samplers and pruners)"),
    "matplotlib": ("plots", "plots (sweep summaries, reproduction figures, VAE latents)"),
    "wandb": ("wandb", "the wandb metric writer"),
    "huggingface_hub": ("hub", "importing released weights by their Hugging Face id"),
}


def require(module: str):
  """``import module``, or ConfigError: "<what> needs <module>: pip install '.[extra]'"."""
  try:
    return importlib.import_module(module)
  except ImportError as e:
    if e.name is not None and e.name.split(".")[0] != module.split(".")[0]:
      raise  # the package is there but one of its own imports failed: show it
    extra, what = EXTRAS.get(module.split(".")[0], ("", module))
    hint = f"pip install '.[{extra}]' (or -r requirements.txt)" if extra else \
        f"pip install {module}"
    raise ConfigError(f"{what} needs {module}, which is not installed: {hint}.") from None

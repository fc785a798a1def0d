"""diffusion/reproduce/registry.py: every paper's entry is complete, listed once, and
its weights protocols are valid configs."""

import os

from diffusion.reproduce.registry import BASELINES
from diffusion.paths import REPO



def test_every_entry_is_complete():
  for name, b in BASELINES.items():
    assert b.name == name and b.metrics and b.tiers
    for m in b.metrics:
      assert m.why and m.protocol and m.band[0] <= m.band[1]
    assert callable(b.experiment)
    assert b.experiment.__module__.startswith(("diffusion.reproduce.papers.",
                                               "diffusion.reproduce.generic"))
    if b.config:
      assert os.path.isfile(os.path.join(REPO, b.config)), b.config


def test_every_papers_entry_is_in_the_registry_once():
  """An entry written in a paper's module and left out of the registry's one list, or
  listed twice (which the name -> entry dict would hide), fails here."""
  import importlib  # pylint: disable=import-outside-toplevel
  import pkgutil  # pylint: disable=import-outside-toplevel
  from diffusion.reproduce import papers, registry  # pylint: disable=import-outside-toplevel
  from diffusion.reproduce.schema import Baseline  # pylint: disable=import-outside-toplevel
  written = []
  for info in pkgutil.iter_modules(papers.__path__):
    module = importlib.import_module(f"{papers.__name__}.{info.name}")
    written += [v.name for v in vars(module).values() if isinstance(v, Baseline)]
  assert len(written) == len(set(written)) == len(registry.ENTRIES) == len(BASELINES)
  assert set(written) == set(BASELINES)


def test_weights_protocols_are_valid_configs():
  """Every protocol's overrides apply to the release's config and validate (DDPM CIFAR-10)."""
  from configs.ddpm import cifar10  # pylint: disable=import-outside-toplevel
  from diffusion.config import checks  # pylint: disable=import-outside-toplevel
  from diffusion.sweeps.grid import apply_overrides  # pylint: disable=import-outside-toplevel
  for name in ("ddpm_cifar10_weights", "ddim_cifar10_weights", "fast_samplers_cifar10_weights"):
    b = BASELINES[name]
    covered = set()
    for protocol in b.tiers["weights"].overrides["protocols"].values():
      changes = {f"sampling.{k}": v for k, v in protocol.get("sampling", {}).items()}
      changes.update({k: v for k, v in protocol.items() if "." in k})
      checks.validate(apply_overrides(cifar10.get_config(), changes))
      covered |= set(protocol["metrics"])
    assert covered == {m.name for m in b.metrics}, name

"""diffusion/config/__init__.py: the config reference (docs/config.md) is what its
generator writes now and lists every field."""

import pathlib
import sys

from diffusion import paths
from diffusion.config import DiffusionRunConfig, VAERunConfig

REPO = pathlib.Path(paths.REPO)


def test_config_reference_is_current_and_lists_every_field():
  """docs/config.md is what docs/make_config_reference.py writes now (never stale)."""
  sys.path.insert(0, str(REPO / "docs"))
  import make_config_reference  # pylint: disable=import-outside-toplevel
  doc = (REPO / "docs" / "config.md").read_text()
  assert doc == make_config_reference.text(), "run: python docs/make_config_reference.py"
  for run_cls in (DiffusionRunConfig, VAERunConfig):
    missing = [path for path in run_cls.field_docs() if f"`{path}`" not in doc]
    assert not missing

"""Reading a config field the same way everywhere.

The public functions take ``config.<section>`` as an ml_collections ConfigDict,
a plain dict or any object with attributes, and fall back to the base default
for a field that is missing, so notebooks can pass small hand-made configs.
"""

from typing import Any


def get_field(cfg: Any, name: str, default: Any) -> Any:
  """``cfg.name`` / ``cfg[name]``, or ``default`` when ``cfg`` is None or lacks it."""
  if cfg is None:
    return default
  if isinstance(cfg, dict):
    return cfg.get(name, default)
  try:
    return getattr(cfg, name)
  except (AttributeError, KeyError):
    return default

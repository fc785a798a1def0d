"""Nested dicts <-> flat dicts keyed by paths: the one implementation.

Parameter trees are stored flat in .npz files (``"conv/kernel"``) and configs are
compared flat (``"optim.lr"``); both go through :func:`flatten` / :func:`unflatten`.
"""

from typing import Any, Callable, Dict, Mapping


def flatten(tree: Mapping[str, Any], sep: str = "/", leaf: Callable[[Any], Any] = None,
            prefix: str = "") -> Dict[str, Any]:
  """{"a": {"b": 1}} -> {"a<sep>b": 1}; ``leaf`` (optional) maps every leaf value."""
  out: Dict[str, Any] = {}
  for k, v in tree.items():
    name = f"{prefix}{sep}{k}" if prefix else str(k)
    if isinstance(v, Mapping):
      out.update(flatten(v, sep, leaf, name))
    else:
      out[name] = leaf(v) if leaf is not None else v
  return out


def unflatten(flat: Mapping[str, Any], sep: str = "/",
              leaf: Callable[[Any], Any] = None) -> Dict[str, Any]:
  """The inverse of :func:`flatten`: {"a<sep>b": 1} -> {"a": {"b": 1}}."""
  out: Dict[str, Any] = {}
  for name, v in flat.items():
    node = out
    parts = name.split(sep)
    for p in parts[:-1]:
      node = node.setdefault(p, {})
    node[parts[-1]] = leaf(v) if leaf is not None else v
  return out

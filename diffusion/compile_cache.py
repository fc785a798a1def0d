"""JAX's persistent compilation cache, on by default for the command lines and tests.

A compiled program is stored on disk keyed by its HLO, options and backend, so a resumed
run, the next point of a sweep, ``sample.py`` on a run and the test suite load it instead
of compiling again. The folder is ``$DIFFUSION_CACHE_DIR/jax`` (default
``~/.cache/diffusion/jax``); ``DIFFUSION_COMPILE_CACHE=0`` turns the cache off. It holds
only compiled programs and can be deleted at any time.
"""

import os

import jax


def folder() -> str:
  base = os.environ.get("DIFFUSION_CACHE_DIR", "~/.cache/diffusion")
  return os.path.join(os.path.expanduser(base), "jax")


def enable() -> str:
  """Points JAX's persistent cache at :func:`folder` (caching programs that take 0.5 s
  or more to compile); returns the folder, or "" when DIFFUSION_COMPILE_CACHE=0."""
  if os.environ.get("DIFFUSION_COMPILE_CACHE", "1") == "0":
    return ""
  path = folder()
  try:
    os.makedirs(path, exist_ok=True)
  except OSError:
    return ""          # a read-only home: run without the cache
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return path

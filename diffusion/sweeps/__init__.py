"""Hyperparameter sweeps defined in config files (see the README's "Sweeps").

  grid.py      sweep / product / zip / chain, the command-line grid, point names
  ledger.py    DIR/sweep.json: every point's state, resumable
  runner.py    sequential | vmap (populations) | ray, one ledger for all
  points.py    a finished point's outcome in the ledger (every mode)
  ray_mode.py  points as Ray tasks (a local or existing cluster)
  summary.py   summary.md / .csv and plots (``python -m diffusion.sweeps summarize DIR``)
"""

from diffusion.sweeps.grid import (apply_overrides, chain, load_sweep, parse_grid, point_names,
                                   product, sweep, zip)
from diffusion.sweeps.ledger import Ledger, read_ledger
from diffusion.sweeps.runner import MODES, groups, prepare, run_sweep
from diffusion.sweeps.summary import summarize

__all__ = ["Ledger", "MODES", "apply_overrides", "chain", "groups", "load_sweep", "parse_grid",
           "point_names", "prepare", "product", "read_ledger", "run_sweep", "summarize",
           "sweep", "zip"]

"""Hyperparameter sweeps defined in config files (docs/sweeps.md).

  grid.py            sweep / product / zip / chain, the command-line grid, point names
  spaces.py          choice / loguniform / uniform / randint: a search's space
  ledger.py          DIR/sweep.json: every point's (or trial's) state, resumable
  runner.py          sequential | vmap (populations) | ray, one ledger for all
  points.py          a finished point's outcome in the ledger (every mode)
  ray_mode.py        points as Ray tasks (a local or existing cluster)
  search_settings.py a search's flags and the checks between them
  search.py          Optuna: samplers (random, Sobol, TPE), ASHA, the study in DIR
  trials.py          a search's driver: ask, train, report, tell (one trial at a time, or
                     populations of --population trials)
  reporter.py        what a trial reports to its search while it trains (ASHA's rungs)
  pbt.py             population-based training: rank, exploit, explore, the lineage
  ray_tune.py        a search on Ray Tune (ASHA, PBT, OptunaSearch), the same ledger
  seeds.py           seeds as an axis: repeats, mean and 95% Student-t interval
  summary.py         a grid's summary.md / .csv and plots
  search_summary.py  a search's summary, and several sweeps compared
  report.py          ``python -m diffusion.sweeps summarize DIR``: whichever DIR holds
"""

from diffusion.sweeps.grid import (apply_overrides, chain, load_sweep, parse_grid, point_names,
                                   product, sweep, zip)
from diffusion.sweeps.ledger import Ledger, read_ledger
from diffusion.sweeps.report import summarize
from diffusion.sweeps.runner import MODES, groups, prepare, run_sweep
from diffusion.sweeps.spaces import choice, loguniform, randint, uniform

__all__ = ["Ledger", "MODES", "apply_overrides", "chain", "choice", "groups", "load_sweep",
           "loguniform", "parse_grid", "point_names", "prepare", "product", "randint",
           "read_ledger", "run_sweep", "summarize", "sweep", "uniform", "zip"]

"""``python -m diffusion.sweeps summarize DIR``: the summary of whatever DIR holds.

A grid's folder -> :func:`diffusion.sweeps.summary.summarize`; a search's ->
:func:`diffusion.sweeps.search_summary.summarize_search`; a folder of sweeps (a grid and a
search of one config side by side) -> :func:`diffusion.sweeps.search_summary.compare`.
"""

import os

from diffusion.sweeps import search_summary, summary
from diffusion.sweeps.ledger import read_ledger


def summarize(sweep_dir: str, plots: bool = True) -> str:
  """Writes the summary files of ``sweep_dir``; returns the Markdown."""
  if not os.path.isfile(os.path.join(sweep_dir, "sweep.json")) and os.path.isdir(sweep_dir):
    return search_summary.compare(sweep_dir, plots=plots)
  if read_ledger(sweep_dir).get("kind") == "search":
    return search_summary.summarize_search(sweep_dir, plots=plots)
  return summary.summarize(sweep_dir, plots=plots)

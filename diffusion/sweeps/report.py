"""``python -m diffusion.sweeps summarize DIR``: the summary of whatever DIR holds.

A grid's folder -> :func:`diffusion.sweeps.summary.summarize`; a search's ->
:func:`diffusion.sweeps.search_summary.summarize_search`; a folder of sweeps (a grid and a
search of one config side by side) -> :func:`diffusion.sweeps.search_summary.compare`. A
sweep trained with population-based training adds its lineage to summary.md and draws
``pbt_schedules.png`` (:mod:`diffusion.sweeps.pbt`).
"""

import os

from diffusion.errors import ConfigError
from diffusion.io import atomic
from diffusion.sweeps import pbt, search_summary, summary
from diffusion.sweeps.ledger import read_ledger


def summarize(sweep_dir: str, plots: bool = True) -> str:
  """Writes the summary files of ``sweep_dir``; returns the Markdown."""
  if not os.path.isfile(os.path.join(sweep_dir, "sweep.json")) and os.path.isdir(sweep_dir):
    return search_summary.compare(sweep_dir, plots=plots)
  ledger = read_ledger(sweep_dir)
  if ledger.get("kind") == "search":
    text = search_summary.summarize_search(sweep_dir, plots=plots)
  else:
    text = summary.summarize(sweep_dir, plots=plots)
  lineage = pbt.lineage_text(ledger)
  if not lineage:
    return text
  text += "\n\n" + lineage
  atomic.write_text(os.path.join(sweep_dir, "summary.md"), text + "\n")
  if plots:
    from diffusion import extras  # pylint: disable=import-outside-toplevel
    try:
      extras.require("matplotlib")
    except ConfigError:
      return text   # the summary already says how to get the plots
    metric = ledger["pbt"]["metric"]
    final = {p["name"]: p["metric"] if p.get("metric") is not None else
             search_summary.last_value(p["workdir"], metric) for p in ledger["points"]}
    pbt.plot_schedules(ledger, os.path.join(sweep_dir, "pbt_schedules.png"),
                       {k: v for k, v in final.items() if v is not None})
  return text

"""The summary of a sweep: a Markdown table, the same as CSV, and plots.

  python -m diffusion.sweeps summarize DIR

writes ``DIR/summary.md`` (point | overrides | status | steps | final loss | best
evaluations), ``DIR/summary.csv`` (the same rows), ``DIR/loss_curves.png`` (the
training loss of every point, one line each, log scale) and, for every swept key
with numeric values, ``DIR/<metric>_vs_<key>.png`` for the final loss and each
evaluation metric. It reads only the ledger and each point's metrics.jsonl, so it
works while a sweep runs and after it.
"""

import csv
import io
import os
import re
from typing import Any, Dict, List, Tuple

from diffusion import evals
from diffusion.io import atomic
from diffusion.io.metric_writers import read_metrics, read_metrics_counted
from diffusion.sweeps.ledger import missing_result, read_ledger

# Evaluation metrics where larger is better, as each evaluator declares them; every
# other eval/* metric is minimised.
MAXIMISED = evals.maximised_metrics()


def point_metrics(workdir: str) -> Tuple[Dict[str, float], Dict[str, float]]:
  """(final, best) of a run: its last logged training row, and the best of each eval/*."""
  rows = read_metrics(workdir)
  final: Dict[str, float] = {}
  best: Dict[str, float] = {}
  for row in rows:
    if "loss" in row:
      final = {k: v for k, v in row.items() if k != "time"}
    for k, v in row.items():
      if k.startswith("eval/") and not k.endswith("_se") and not k.endswith("_std"):
        better = max if k in MAXIMISED else min
        best[k] = v if k not in best else better(best[k], v)
  return final, best


def _fmt(v: Any) -> str:
  if isinstance(v, float):
    return f"{v:.5g}"
  return str(v)


def summary_rows(sweep_dir: str) -> List[Dict[str, Any]]:
  """One dict per point: name, overrides, status, steps, final loss and best metrics."""
  ledger = read_ledger(sweep_dir)
  rows = []
  for p in ledger["points"]:
    final, best = point_metrics(p["workdir"]) if os.path.isdir(p["workdir"]) else ({}, {})
    status = p["status"]
    gone = missing_result(p) if status == "done" else None
    if gone:   # deleted or damaged since: no result to show; a rerun trains it again
      final, best, status = {}, {}, "pending"
      p["error"] = f"marked done, but {gone}; the next run trains it again"
    row = {"point": p["name"], "status": status,
           "overrides": ", ".join(f"{k}={_fmt(v)}" for k, v in p["overrides"].items()),
           "steps": final.get("step", 0), "final_loss": final.get("loss")}
    row.update({f"best {k}": v for k, v in sorted(best.items())})
    skipped = read_metrics_counted(p["workdir"])[1] if os.path.isdir(p["workdir"]) else 0
    if skipped:
      p["error"] = "; ".join(filter(None, [p.get("error"), (
          f"skipped {skipped} unreadable line(s) of {p['workdir']}/metrics.jsonl")]))
    if p.get("error"):
      row["error"] = p["error"]
    rows.append(row)
  return rows


def markdown_table(rows: List[Dict[str, Any]]) -> str:
  columns = list(dict.fromkeys(c for r in rows for c in r if c != "error"))
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  for r in rows:
    lines.append("| " + " | ".join(_fmt(r.get(c, "")) if r.get(c) is not None else ""
                                   for c in columns) + " |")
  errors = [f"- {r['point']}: {r['error']}" for r in rows if r.get("error")]
  return "\n".join(lines + ([""] + ["Failed, missing or damaged points:"] + errors if errors else []))


def summarize(sweep_dir: str, plots: bool = True) -> str:
  """Writes summary.md, summary.csv (and the plots); returns the Markdown."""
  rows = summary_rows(sweep_dir)
  text = markdown_table(rows)
  atomic.write_text(os.path.join(sweep_dir, "summary.md"), text + "\n")
  columns = list(dict.fromkeys(c for r in rows for c in r))
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=columns)
  writer.writeheader()
  writer.writerows(rows)
  atomic.write_text(os.path.join(sweep_dir, "summary.csv"), buf.getvalue())
  if plots:
    write_plots(sweep_dir)
  return text


def write_plots(sweep_dir: str) -> List[str]:
  """Loss curves of all points, and each metric against each numeric swept value."""
  # matplotlib takes ~1.5 s to import; only the plots need it.
  from diffusion import extras  # pylint: disable=import-outside-toplevel
  extras.require("matplotlib")  # one line naming the plots extra
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  ledger = read_ledger(sweep_dir)
  written = []
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for p in ledger["points"]:
    rows = [r for r in read_metrics(p["workdir"]) if "loss" in r] if os.path.isdir(
        p["workdir"]) else []
    if rows:
      ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=p["name"], lw=1,
              marker=".", ms=3)
  ax.set(xlabel="step", ylabel="training loss", yscale="log",
         title=f"{ledger.get('sweep', '')}: loss of every point")
  if ax.lines:
    ax.legend(fontsize=6, ncol=2)
  path = os.path.join(sweep_dir, "loss_curves.png")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  written.append(path)

  measured = {p["name"]: point_metrics(p["workdir"]) if os.path.isdir(p["workdir"]) else ({}, {})
              for p in ledger["points"]}
  keys = list(dict.fromkeys(k for p in ledger["points"] for k in p["overrides"]))
  metrics = ["final_loss"] + sorted({m for _, best in measured.values() for m in best})
  for key in keys:
    pts = [p for p in ledger["points"] if isinstance(p["overrides"].get(key), (int, float))
           and not isinstance(p["overrides"].get(key), bool)]
    if len({p["overrides"][key] for p in pts}) < 2:
      continue
    for metric in metrics:
      xs, ys = [], []
      for p in pts:
        final, best = measured[p["name"]]
        y = final.get("loss") if metric == "final_loss" else best.get(metric)
        if y is not None:
          xs.append(p["overrides"][key])
          ys.append(y)
      if not xs:
        continue
      fig, ax = plt.subplots(figsize=(5, 3.5))
      ax.scatter(xs, ys)
      ax.set(xlabel=key, ylabel=metric, title=f"{metric} vs {key}")
      if min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
      safe = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{metric}_vs_{key}")
      path = os.path.join(sweep_dir, f"{safe}.png")
      fig.tight_layout()
      fig.savefig(path, dpi=120)
      plt.close(fig)
      written.append(path)
  return written

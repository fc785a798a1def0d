"""The summary of a search, and the comparison of several sweeps in one folder.

For a search folder (``train.py --search ... --workdir=DIR``), ``DIR/summary.md`` holds:

  - the best trial: its overrides, its metric, and the command that trains it as a single
    run (``python train.py --config=FILE --workdir=DIR/best --config.k=v ...``);
  - every trial ranked by its metric (trials trained to the end first; those ASHA stopped
    after them, by the value that stopped them; failed ones last);
  - the rung table (ASHA): each trial's metric at each rung, and where it stopped;
  - the parameters' importance (Optuna's fANOVA over the completed trials);
  - with ``--seeds``: each repeated configuration's mean ± 95% interval over its seeds;

``DIR/summary.csv`` the ranked rows, and the plots (matplotlib, the ``plots`` extra):
``search_progress.png`` (the best metric so far against the training steps spent, every
trial's steps counted) and ``<metric>_vs_<key>.png`` per numeric key of the space.

For a folder holding several sweeps (``runs/compare/grid``, ``runs/compare/search``: a
grid and a search of one config), :func:`compare` writes ``search_progress.png`` with a
curve per sweep and ``comparison.md``: each sweep's steps, best metric, and the steps it
spent to match the best grid's metric.
"""

import csv
import io
import math
import os
import re
import shlex
from typing import Any, Dict, List, Optional, Sequence, Tuple

from diffusion.errors import ConfigError
from diffusion.io import atomic
from diffusion.io.metric_writers import read_metrics
from diffusion.sweeps import seeds
from diffusion.sweeps.grid import format_value
from diffusion.sweeps.ledger import read_ledger
from diffusion.sweeps.summary import MAXIMISED

DONE_FIRST = {"done": 0, "stopped": 1, "running": 2, "pending": 2, "failed": 3}


def _fmt(v: Any) -> str:
  if v is None:
    return ""
  if isinstance(v, float):
    return "" if math.isnan(v) else f"{v:.5g}"
  return str(v)


def _overrides_text(overrides: Dict[str, Any]) -> str:
  return ", ".join(f"{k}={format_value(v)}" for k, v in overrides.items())


def _better(mode: str):
  return (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b)


def _sort_value(value: Optional[float], mode: str) -> float:
  if value is None or not math.isfinite(value):
    return math.inf
  return -value if mode == "max" else value


def ranked(points: Sequence[Dict[str, Any]], mode: str) -> List[Dict[str, Any]]:
  """The search's trials (seed replicas excluded): done ones by metric, then stopped ones
  by the value that stopped them, then unfinished, then failed."""
  trials = [p for p in points if p.get("trial") is not None]
  return sorted(trials, key=lambda p: (DONE_FIRST.get(p["status"], 2),
                                       _sort_value(p.get("metric"), mode), p["trial"]))


def best_trial(points: Sequence[Dict[str, Any]], mode: str) -> Optional[Dict[str, Any]]:
  """The best trial trained to the end (None before any has finished)."""
  order = [p for p in ranked(points, mode) if p["status"] == "done" and
           p.get("metric") is not None and math.isfinite(p["metric"])]
  return order[0] if order else None


def reproduce_command(ledger: Dict[str, Any], point: Dict[str, Any], sweep_dir: str) -> str:
  """The command that trains ``point`` as a single run (its own --workdir beside DIR's
  trials): the config file, the search's --config.* overrides, then the trial's."""
  args = ["python", "train.py", f"--config={ledger['config']}",
          f"--workdir={os.path.join(sweep_dir, 'best')}"]
  merged = dict(ledger.get("common_overrides", {}))
  merged.update(point["overrides"])
  for key, value in merged.items():
    args.append(f"--config.{key}={_exact(value)}")
  metric = ledger["definition"].get("metric", "")
  if metric.startswith("eval/heldout_loss"):   # the metric it was judged by, logged too
    args.append("--config.eval.heldout_loss.every=" + str(_log_every(point)))
  return " ".join(shlex.quote(a) for a in args)


def _exact(value) -> str:
  """A value as ``--config.x=`` parses it back exactly (floats to every digit)."""
  if isinstance(value, (tuple, list)):
    return "(" + ",".join(_exact(v) for v in value) + ("," if len(value) == 1 else "") + ")"
  return repr(value) if isinstance(value, float) else str(value)


def _log_every(point: Dict[str, Any]) -> Any:
  try:
    rows = read_metrics(point["workdir"])
  except OSError:
    rows = []
  steps = sorted({int(r["step"]) for r in rows if "loss" in r})
  return steps[1] - steps[0] if len(steps) > 1 else (steps[0] if steps else 100)


def rung_table(ledger: Dict[str, Any], trials: Sequence[Dict[str, Any]]) -> str:
  """Each trial's metric at each rung (Markdown); ``stopped`` after the rung that stopped
  it. "" when the search has no rungs."""
  rungs = ledger["definition"].get("rungs") or []
  if not rungs:
    return ""
  header = ["trial"] + [f"rung {k} (step {s})" for k, s in enumerate(rungs)] + ["end"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for p in trials:
    at = {r["rung"]: r for r in p.get("rungs") or []}
    cells = []
    for k in range(len(rungs)):
      r = at.get(k)
      text = _fmt(r["value"]) if r else ""
      if r and p.get("stopped") and p["stopped"].get("rung") == k:
        text += " (stopped)"
      cells.append(text)
    end = _fmt(p.get("metric")) if p["status"] == "done" else p["status"]
    lines.append(f"| {p['trial']} | " + " | ".join(cells) + f" | {end} |")
  return "\n".join(lines)


def importance_text(sweep_dir: str, ledger: Dict[str, Any]) -> str:
  """One line: fANOVA importances (Optuna), or why there are none."""
  from diffusion import extras  # pylint: disable=import-outside-toplevel
  try:
    extras.require("optuna")
  except ConfigError as e:
    return f"Parameter importance: not computed ({e})"
  from diffusion.sweeps import search  # pylint: disable=import-outside-toplevel  # optional
  d = ledger["definition"]
  study = search.open_study(sweep_dir, searcher=d["searcher"], seed=d["seed"],
                            trials=d.get("trials", 1), mode=d["metric_mode"])
  values = search.importances(study, list(d["space"]))
  if not values:
    return ("Parameter importance: needs two or more trials trained to the end with "
            "different values of the metric.")
  complete = sum(1 for p in ledger["points"] if p.get("trial") is not None and
                 p["status"] == "done")
  parts = ", ".join(f"{k} {v:.2f}" for k, v in values.items())
  return (f"Parameter importance (fANOVA over the {complete} trials trained to the end; "
          f"shares of the metric's variance): {parts}")


def seed_section(ledger: Dict[str, Any]) -> str:
  """The configurations repeated over seeds: mean ± 95% interval of the metric and n,
  ranked by mean ("" when nothing was repeated)."""
  d = ledger["definition"]
  metric, mode = d["metric"], d["metric_mode"]
  points = [p for p in ledger["points"] if p["status"] == "done"]
  ids = {p.get("config_id") for p in points if p.get("trial") is None}
  members = [p for p in points if p.get("config_id") in ids]
  if not members:
    return ""
  rows = seeds.group(members, [{metric: p.get("metric")} for p in members], metric, mode)
  lines = [f"Configurations over seeds ({metric} at each run's last report; mean ± 95% "
           "Student-t interval, n seeds; ranked by mean):", "",
           "| rank | configuration | " + metric + " | n | seeds |", "|---|---|---|---|---|"]
  for i, r in enumerate(rows, 1):
    interval = seeds.format_interval(r.get(metric, math.nan), r.get(f"{metric} ci95", math.nan))
    lines.append(f"| {i} | {_overrides_text(r['configuration'])} | {interval} | {r['n']} | "
                 f"{', '.join(str(s) for s in r['seeds'])} |")
  return "\n".join(lines)


def summary_rows(ledger: Dict[str, Any]) -> List[Dict[str, Any]]:
  """The ranked trials as table rows."""
  metric = ledger["definition"]["metric"]
  rows = []
  for rank, p in enumerate(ranked(ledger["points"], ledger["definition"]["metric_mode"]), 1):
    stopped = p.get("stopped")
    rows.append({"rank": rank, "trial": p["trial"], "status": p["status"],
                 "overrides": _overrides_text(p["overrides"]), "steps": p.get("steps", 0),
                 metric: p.get("metric"), f"best {metric}": p.get("best_metric"),
                 "stopped at": (f"rung {stopped['rung']} (step {stopped['step']})"
                                if stopped else ""),
                 "error": p.get("error") or ""})
  return rows


def summarize_search(sweep_dir: str, plots: bool = True) -> str:
  """Writes summary.md, summary.csv (and the plots) of a search; returns the Markdown."""
  ledger = read_ledger(sweep_dir)
  d = ledger["definition"]
  metric, mode = d["metric"], d["metric_mode"]
  trials = [p for p in ledger["points"] if p.get("trial") is not None]
  finished = sum(p["status"] in ("done", "stopped", "failed") for p in trials)
  spent = sum(int(p.get("steps") or 0) for p in ledger["points"])
  parts = [f"Search {ledger.get('sweep')!r} of {ledger['config']}: {finished} of "
           f"{d.get('trials')} trials finished ({d['searcher']} searcher, scheduler "
           f"{d['scheduler']}), {spent:,} training steps in all; metric {metric} ({mode})."]
  best = best_trial(ledger["points"], mode)
  if best is not None:
    parts.append(f"Best trial: {best['trial']} ({_overrides_text(best['overrides'])}): "
                 f"{metric} {_fmt(best['metric'])}. Train it as a single run:\n\n    "
                 + reproduce_command(ledger, best, sweep_dir))
  rows = summary_rows(ledger)
  table_rows = [{k: v for k, v in r.items() if k != "error"} for r in rows]
  parts.append(_markdown(table_rows))
  errors = [f"- trial {r['trial']}: {r['error']}" for r in rows if r["error"]]
  if errors:
    parts.append("Failed trials:\n" + "\n".join(errors))
  parts += list(filter(None, [rung_table(ledger, [p for p in ranked(ledger["points"], mode)]),
                              seed_section(ledger)]))
  parts.append(importance_text(sweep_dir, ledger))
  if plots:
    from diffusion import extras  # pylint: disable=import-outside-toplevel
    try:
      extras.require("matplotlib")
    except ConfigError as e:
      plots = False
      parts.append(f"No plots: {e}")
  text = "\n\n".join(parts)
  atomic.write_text(os.path.join(sweep_dir, "summary.md"), text + "\n")
  buf = io.StringIO()
  columns = list(dict.fromkeys(c for r in rows for c in r))
  writer = csv.DictWriter(buf, fieldnames=columns)
  writer.writeheader()
  writer.writerows(rows)
  atomic.write_text(os.path.join(sweep_dir, "summary.csv"), buf.getvalue())
  if plots:
    write_search_plots(sweep_dir, ledger)
  return text


def _markdown(rows: List[Dict[str, Any]]) -> str:
  if not rows:
    return "No trials yet."
  columns = list(dict.fromkeys(c for r in rows for c in r))
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
  return "\n".join(lines)


# ---- progress: the best metric so far against the steps spent --------------------------


def last_value(workdir: str, metric: str) -> Optional[float]:
  """The metric's last logged value in a run's metrics.jsonl (None if never logged)."""
  try:
    rows = read_metrics(workdir)
  except OSError:
    return None
  values = [r[metric] for r in rows if metric in r]
  return float(values[-1]) if values else None


def progress(ledger: Dict[str, Any], metric: str, mode: str) -> List[Tuple[int, float]]:
  """[(training steps spent so far, best metric so far)] after each finished entry, in the
  order they were added (a search's trials and replicas; a grid's points). Only entries
  trained to the end count for the best; every entry's steps count for the cost."""
  spent, best, out = 0, None, []
  better = _better(mode)
  for p in ledger["points"]:
    steps = p.get("steps")
    if steps is None:   # a grid point: its steps are its last logged row's
      steps = (p.get("final") or {}).get("step", 0)
    spent += int(steps or 0)
    if p["status"] != "done":
      continue
    value = p.get("metric") if ledger.get("kind") == "search" else last_value(p["workdir"], metric)
    if value is not None and math.isfinite(value) and (best is None or better(value, best)):
      best = value
    if best is not None:
      out.append((spent, best))
  return out


def _sweep_dirs(folder: str) -> List[str]:
  return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                if os.path.isfile(os.path.join(folder, n, "sweep.json")))


def compare(folder: str, metric: Optional[str] = None, plots: bool = True) -> str:
  """The sweeps in ``folder``'s subfolders on one metric: comparison.md and
  search_progress.png (a curve each). ``metric`` defaults to a search's own."""
  dirs = _sweep_dirs(folder)
  if not dirs:
    raise ConfigError(f"{folder} has no sweep.json and no sweep folders in it; point at a "
                      "sweep's --workdir, or at a folder of them.")
  ledgers = {d: read_ledger(d) for d in dirs}
  searches = [l for l in ledgers.values() if l.get("kind") == "search"]
  metric = metric or (searches[0]["definition"]["metric"] if searches else None)
  if metric is None:
    raise ConfigError(f"{folder} holds grids only; name the metric to compare them on.")
  mode = "max" if metric in MAXIMISED else "min"
  if searches:
    mode = searches[0]["definition"]["metric_mode"]
  curves = {os.path.basename(d): progress(l, metric, mode) for d, l in ledgers.items()}
  grid_best = [c[-1][1] for d, c in curves.items() if c and
               ledgers[os.path.join(folder, d)].get("kind") != "search"]
  target = (max(grid_best) if mode == "max" else min(grid_best)) if grid_best else None
  lines = [f"Sweeps in {folder} on {metric} ({mode}):", "",
           "| sweep | kind | training steps | best | steps to reach the best grid's |",
           "|---|---|---|---|---|"]
  better = _better(mode)
  for name, curve in curves.items():
    kind = ledgers[os.path.join(folder, name)].get("kind", "grid")
    total = sum(int(p.get("steps") if p.get("steps") is not None else
                    (p.get("final") or {}).get("step", 0))
                for p in ledgers[os.path.join(folder, name)]["points"])
    reach = next((s for s, v in curve if target is not None and not better(target, v)), None)
    lines.append(f"| {name} | {kind} | {total:,} | {_fmt(curve[-1][1]) if curve else ''} | "
                 f"{'' if reach is None else f'{reach:,}'} |")
  text = "\n".join(lines)
  atomic.write_text(os.path.join(folder, "comparison.md"), text + "\n")
  if plots:
    from diffusion import extras  # pylint: disable=import-outside-toplevel
    try:
      extras.require("matplotlib")
      _progress_plot(os.path.join(folder, "search_progress.png"), curves, metric)
    except ConfigError as e:
      text += f"\n\nNo plots: {e}"
  return text


def _pyplot():
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def _progress_plot(path: str, curves: Dict[str, List[Tuple[int, float]]], metric: str) -> None:
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6.5, 4))
  for name, curve in curves.items():
    if curve:
      ax.step([s for s, _ in curve], [v for _, v in curve], where="post", marker="o", ms=3,
              label=name)
  ax.set(xlabel="training steps spent (all trials)", ylabel=f"best {metric} so far")
  ax.set_title("best so far against training spent", fontsize=9)
  if any(curves.values()):
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_search_plots(sweep_dir: str, ledger: Dict[str, Any]) -> List[str]:
  """search_progress.png and the metric against each numeric key of the space."""
  d = ledger["definition"]
  metric, mode = d["metric"], d["metric_mode"]
  written = [os.path.join(sweep_dir, "search_progress.png")]
  spec = ledger.get("sweep") or ""
  _progress_plot(written[0], {spec if "=" not in spec else "search": progress(ledger, metric,
                                                                                mode)}, metric)
  plt = _pyplot()
  trials = [p for p in ledger["points"] if p.get("trial") is not None and
            p.get("metric") is not None]
  colours = {"done": "C0", "stopped": "C1", "running": "0.6", "pending": "0.6", "failed": "C3"}
  for key in d["space"]:
    xy = [(p["overrides"].get(key), p["metric"], p["status"]) for p in trials
          if isinstance(p["overrides"].get(key), (int, float)) and
          not isinstance(p["overrides"].get(key), bool)]
    if len({x for x, _, _ in xy}) < 2:
      continue
    fig, ax = plt.subplots(figsize=(6, 4))
    for status in sorted({s for _, _, s in xy}):
      pts = [(x, y) for x, y, s in xy if s == status]
      label = status if status != "stopped" else "stopped (value at its last rung)"
      ax.scatter([x for x, _ in pts], [y for _, y in pts], s=25, color=colours.get(status, "k"),
                 label=label)
    xs = [x for x, _, _ in xy]
    if min(xs) > 0 and max(xs) / min(xs) > 20:
      ax.set_xscale("log")
    ax.set(xlabel=key, ylabel=metric)
    ax.set_title(f"{metric} vs {key}", fontsize=9)
    ax.legend(fontsize=7)
    path = os.path.join(sweep_dir, re.sub(r"[^A-Za-z0-9._-]+", "-", f"{metric}_vs_{key}") + ".png")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)
  return written

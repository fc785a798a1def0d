"""The summary of a sweep: a Markdown table, the same as CSV, and plots.

  python -m diffusion.sweeps summarize DIR

writes ``DIR/summary.md`` (point | overrides | status | steps | final loss | best
evaluations, and, where points differ only in ``training.seed``, each configuration's
mean ± 95% interval over its seeds, ranked), ``DIR/summary.csv`` (the table's rows),
``DIR/loss_curves.png`` (the training loss of every point, one line each, log scale;
each value the mean over its log interval)
and, for every swept key with numeric values, ``DIR/<metric>_vs_<key>.png`` for the
final loss and each evaluation metric; the points of those are coloured by the values of the other
swept keys (:func:`colour_groups`). When the sweep changes a field that changes
what the training loss measures (:data:`LOSS_DEFINING`: the process, schedule,
loss, weighting, data), the summary says so above the table and labels the final
loss and the loss plots "not comparable across points". It reads only the ledger
and each point's config.json and metrics.jsonl, so it works while a sweep runs and
after it. Without matplotlib (the ``plots`` extra) it writes the tables and says
how to get the plots.
"""

import csv
import io
import json
import os
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from diffusion import evals, trees
from diffusion.config import PROCESS_OF_VARIANT
from diffusion.errors import ConfigError
from diffusion.io import atomic
from diffusion.io.metric_writers import read_metrics, read_metrics_counted
from diffusion.sweeps import seeds
from diffusion.sweeps.grid import format_value, short_keys
from diffusion.sweeps.ledger import missing_result, read_ledger

# Evaluation metrics where larger is better, as each evaluator declares them; every
# other eval/* metric is minimised.
MAXIMISED = evals.maximised_metrics()


def _process(c: Mapping[str, Any]) -> Optional[str]:
  return PROCESS_OF_VARIANT.get(c.get("diffusion.variant"))


def _bound_loss(c: Mapping[str, Any]) -> bool:
  return c.get("diffusion.loss") in ("hybrid", "kl")


# Config fields that change what the training loss measures: two points that differ in
# one of them report losses on different scales (a loss averaged over other noise levels,
# other terms or weights, other data), so their final losses are not ranked against each
# other; evaluation metrics (eval/*) are defined apart from training and stay comparable.
# A field maps to None, or to when it matters, from a point's flat config.json (e.g. the
# σ ladder only shapes a VE process's loss; λ only enters the hybrid loss).
# Not listed, since they leave the loss's definition alone: optim.* and training.* (the
# same expectation, reached by another path or estimated with another batch), model.*
# (how ε̂ is computed, scale_by_sigma / cond / rescale_inputs included), sampling.*, eval.*.
LOSS_DEFINING: Dict[str, Optional[Callable[[Mapping[str, Any]], bool]]] = {
    "family": None,                               # a diffusion loss or a VAE bound
    # The process and its noise levels: t ~ U{0..T-1} of another corruption.
    "diffusion.variant": None,                    # VP (ddpm, dpm) or VE (ncsn)
    "diffusion.schedule": None,
    "diffusion.num_timesteps": None,              # T, or the σ ladder's length L
    "diffusion.beta_start": lambda c: _process(c) == "vp",
    "diffusion.beta_end": lambda c: _process(c) == "vp",
    "diffusion.cosine_s": lambda c: _process(c) == "vp",
    "diffusion.sigma_min": lambda c: _process(c) == "ve",
    "diffusion.sigma_max": lambda c: _process(c) == "ve",
    # The objective and its per-t weights.
    "diffusion.loss": None,                       # mse, hybrid or kl
    "diffusion.loss_weighting": None,
    # Terms of the variational bound (hybrid, kl): the reverse variance's parametrisation,
    # the t = 0 decoder, x̂0 clipping inside the bound, and λ of the hybrid loss.
    "diffusion.var_type": _bound_loss,
    "diffusion.decoder": _bound_loss,
    "diffusion.clip_x0": _bound_loss,
    "diffusion.hybrid_lambda": lambda c: c.get("diffusion.loss") == "hybrid",
    # The data the loss is an expectation over, and its scaling ([-1, 1] or [0, 1] data
    # under the same noise is another signal-to-noise ratio at every level).
    "data.dataset": None,
    "data.image_size": None,
    "data.num_channels": None,
    "data.centered": None,
    "data.uniform_dequantization": None,
    "data.binarize": None,
    "data.mixture_weights": lambda c: c.get("data.dataset") == "mixture",
    "data.mixture_means": lambda c: c.get("data.dataset") == "mixture",
    "data.mixture_stds": lambda c: c.get("data.dataset") == "mixture",
    # The VAE's bound: ELBO or IWAE, its number of samples k, the KL weight β.
    "vae.objective": None,
    "vae.num_samples": None,
    "vae.kl_weight": None,
}


def read_point_config(workdir: str) -> Optional[Dict[str, Any]]:
  """A point's config.json as a flat {dotted field: value}, or None where it has none yet
  (a pending point) or it is unreadable."""
  try:
    with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
      raw = json.load(f)
  except (OSError, ValueError):
    return None
  return trees.flatten(raw, sep=".") if isinstance(raw, dict) else None


def _same(value) -> str:
  """A value as JSON writes it (tuples and lists alike), to compare points."""
  return json.dumps(value, sort_keys=True, default=str)


def loss_changing_keys(overrides: Sequence[Mapping[str, Any]],
                       configs: Sequence[Optional[Mapping[str, Any]]]) -> List[str]:
  """The swept keys (in sweep order) that change what the training loss measures.

  Args:
    overrides: each point's overrides (the ledger's), dotted keys.
    configs: each point's flat config.json (:func:`read_point_config`), None where absent;
      one per point, in the order of ``overrides``.
  Returns:
    the keys of :data:`LOSS_DEFINING` (or sections holding one) whose value differs
    between points and that matter to at least one point's config (all, when no point
    has a config.json yet).
  """
  if len(configs) != len(overrides):
    raise ValueError(f"loss_changing_keys: {len(overrides)} points but {len(configs)} configs; "
                     "give one config (or None) per point.")
  known = [c for c in configs if c]
  keys = list(dict.fromkeys(k for o in overrides for k in o))
  out = []
  for key in keys:
    fields = [f for f in LOSS_DEFINING if f == key or f.startswith(key + ".")]
    if not any(LOSS_DEFINING[f] is None or not known or any(LOSS_DEFINING[f](c) for c in known)
               for f in fields):
      continue
    # The points' values of the key: the override, or the config the point ran with.
    values = {_same(o[key]) if key in o else _same(c[key]) if c and key in c else None
              for o, c in zip(overrides, configs)}
    values.discard(None)
    if len(values) > 1:
      out.append(key)
  return out


def not_comparable_label(keys: Sequence[str]) -> str:
  """The label of the final-loss column and of the loss plots, "" when the loss compares."""
  return f"not comparable across points: sweeps {', '.join(keys)}" if keys else ""


def comparability_note(keys: Sequence[str]) -> str:
  """The sentence above the table when the sweep changes what the loss measures."""
  if not keys:
    return ""
  return (f"The training loss is not comparable across points: the sweep changes "
          f"{', '.join(keys)}, which change{'s' if len(keys) == 1 else ''} what the loss "
          "measures; the final losses are shown, but rank points by eval/* metrics.")


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


def final_loss(final: Mapping[str, Any]) -> Optional[float]:
  """A point's final training loss: the mean over its last log interval (the row's
  ``loss_mean``, every step since the previous row), so that one batch's noise does not
  swamp what the sweep changes; the last batch's ``loss`` for runs logged before
  ``loss_mean`` existed; None before the first row."""
  return final.get("loss_mean", final.get("loss"))


def loss_curve(workdir: str) -> Tuple[List[int], List[float]]:
  """A point's training-loss curve: (step, that row's :func:`final_loss`) for every logged
  row, so each value is the mean over its log interval, as the final loss is (a single
  batch's loss swamps a swept lr's effect with seed noise). Empty before the first row."""
  rows = [r for r in read_metrics(workdir) if "loss" in r] if os.path.isdir(workdir) else []
  return [int(r["step"]) for r in rows], [final_loss(r) for r in rows]


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
           "steps": final.get("step", 0), "final_loss": final_loss(final)}
    row.update({f"best {k}": v for k, v in sorted(best.items())})
    skipped = read_metrics_counted(p["workdir"])[1] if os.path.isdir(p["workdir"]) else 0
    if skipped:
      p["error"] = "; ".join(filter(None, [p.get("error"), (
          f"skipped {skipped} unreadable line(s) of {p['workdir']}/metrics.jsonl")]))
    if p.get("error"):
      row["error"] = p["error"]
    rows.append(row)
  return rows


def markdown_table(rows: List[Dict[str, Any]], labels: Optional[Mapping[str, str]] = None) -> str:
  """The rows as a Markdown table (``labels``: header text of some columns), then the
  errors of failed, missing or damaged points."""
  columns = list(dict.fromkeys(c for r in rows for c in r if c != "error"))
  header = [(labels or {}).get(c, c) for c in columns]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(columns)]
  for r in rows:
    lines.append("| " + " | ".join(_fmt(r.get(c, "")) if r.get(c) is not None else ""
                                   for c in columns) + " |")
  errors = [f"- {r['point']}: {r['error']}" for r in rows if r.get("error")]
  return "\n".join(lines + ([""] + ["Failed, missing or damaged points:"] + errors if errors else []))


def ranking_metric(rows: Sequence[Mapping[str, Any]]) -> Tuple[Optional[str], str]:
  """(column, min | max) that ranks a grid's configurations: the held-out loss, else the
  first evaluation metric, else the final loss."""
  columns = list(dict.fromkeys(c for r in rows for c in r))
  evals_ = sorted(c for c in columns if c.startswith("best eval/"))
  for column in (["best eval/heldout_loss"] if "best eval/heldout_loss" in evals_ else []) + \
      evals_ + ["final_loss"]:
    if any(r.get(column) is not None for r in rows):
      return column, "max" if column[len("best "):] in MAXIMISED else "min"
  return None, "min"


def seed_groups_text(ledger: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                     labels: Optional[Mapping[str, str]] = None) -> str:
  """The grid's configurations over their training seeds (points that differ only in
  ``training.seed``, from ``--seeds=K`` or a seed axis): each metric's mean ± 95%
  Student-t interval and n, ranked by :func:`ranking_metric`; "" when no configuration
  has two seeds."""
  points = ledger["points"]
  if not seeds.has_seed_groups([p["overrides"] for p in points]):
    return ""
  done = [(p, r) for p, r in zip(points, rows) if r["status"] == "done"]
  metrics = [c for c in dict.fromkeys(c for _, r in done for c in r)
             if c == "final_loss" or c.startswith("best eval/")]
  rank_by, mode = ranking_metric([r for _, r in done])
  groups = seeds.group([p for p, _ in done], [{m: r.get(m) for m in metrics} for _, r in done],
                       rank_by, mode)
  header = ["rank", "configuration"] + [(labels or {}).get(m, m) for m in metrics] + ["n",
                                                                                      "seeds"]
  lines = [f"Configurations over training seeds (done points; mean ± 95% Student-t interval, "
           f"n seeds; ranked by the mean of {rank_by}, {mode}):", "",
           "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for i, g in enumerate(groups, 1):
    config = ", ".join(f"{k}={_fmt(v)}" for k, v in g["configuration"].items()) or "(base)"
    cells = [seeds.format_interval(g.get(m, float("nan")), g.get(f"{m} ci95", float("nan")))
             for m in metrics]
    lines.append(f"| {i} | {config} | " + " | ".join(cells) +
                 f" | {g['n']} | {', '.join(str(s) for s in g['seeds'])} |")
  return "\n".join(lines)


def sweep_loss_changing_keys(ledger: Mapping[str, Any]) -> List[str]:
  """:func:`loss_changing_keys` of a ledger's points (their config.json files)."""
  points = ledger["points"]
  return loss_changing_keys([p["overrides"] for p in points],
                            [read_point_config(p["workdir"]) for p in points])


def summarize(sweep_dir: str, plots: bool = True) -> str:
  """Writes summary.md, summary.csv (and the plots); returns the Markdown.

  The CSV keeps the column name ``final_loss`` for scripts; the Markdown labels it when
  the loss is not comparable across points. Without matplotlib the tables are written
  and the Markdown ends with the one line saying which extra draws the plots.
  """
  rows = summary_rows(sweep_dir)
  ledger = read_ledger(sweep_dir)
  keys = sweep_loss_changing_keys(ledger)
  labels = {"final_loss": f"final_loss ({not_comparable_label(keys)})"} if keys else None
  text = "\n\n".join(filter(None, [comparability_note(keys), markdown_table(rows, labels),
                                    seed_groups_text(ledger, rows, labels)]))
  if plots:
    from diffusion import extras  # pylint: disable=import-outside-toplevel
    try:
      extras.require("matplotlib")  # ~1.5 s to import; only the plots need it
    except ConfigError as e:
      plots = False
      text += f"\n\nNo plots: {e}"
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


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def colour_groups(overrides: Sequence[Mapping[str, Any]], key: str) -> List[Tuple[str, List[int]]]:
  """The points of a ``<metric>_vs_<key>`` plot, one group (colour, line) per combination
  of the other swept keys' values.

  Args:
    overrides: each point's overrides, in sweep order.
    key: the swept key on the x axis.
  Returns:
    [(legend label, indices into ``overrides``)], groups in order of first appearance,
    each group's indices sorted by the value of ``key`` (the line's order); only points
    whose value of ``key`` is a number. The label names the other keys' values
    (``seed=0, ema_decay=0.999``; ``(base)`` where a point leaves a key to the config),
    "" when the sweep has no other key: one group, one colour.
  """
  every = list(dict.fromkeys(k for o in overrides for k in o))
  short = short_keys(every)
  others = [k for k in every if k != key]
  groups: Dict[Tuple[str, ...], List[int]] = {}
  for i, o in enumerate(overrides):
    if _is_number(o.get(key)):
      combo = tuple(format_value(o[k]) if k in o else "(base)" for k in others)
      groups.setdefault(combo, []).append(i)
  return [(", ".join(f"{short[k]}={v}" for k, v in zip(others, combo)),
           sorted(idx, key=lambda i: overrides[i][key])) for combo, idx in groups.items()]


# How a point that has not finished is drawn in a <metric>_vs_<key> plot (done points are
# filled circles joined by their group's line).
UNFINISHED_MARKERS = {"failed": ("x", "failed"), "running": ("o", "running / pending"),
                      "pending": ("o", "running / pending")}


def write_plots(sweep_dir: str) -> List[str]:
  """Loss curves of all points, and each metric against each numeric swept value."""
  # matplotlib takes ~1.5 s to import; only the plots need it.
  from diffusion import extras  # pylint: disable=import-outside-toplevel
  extras.require("matplotlib")  # one line naming the plots extra
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  from matplotlib.lines import Line2D  # pylint: disable=import-outside-toplevel

  ledger = read_ledger(sweep_dir)
  caveat = not_comparable_label(sweep_loss_changing_keys(ledger))
  written = []
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for p in ledger["points"]:
    steps, losses = loss_curve(p["workdir"])
    if steps:
      ax.plot(steps, losses, label=p["name"], lw=1, marker=".", ms=3)
  ax.set(xlabel="step", ylabel="training loss (mean over each log interval)", yscale="log")
  ax.set_title(f"{ledger.get('sweep', '')}: loss of every point"
               + (f"\n({caveat})" if caveat else ""), fontsize=9)
  if ax.lines:
    ax.legend(fontsize=6, ncol=2)
  path = os.path.join(sweep_dir, "loss_curves.png")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  written.append(path)

  points = ledger["points"]
  measured = {p["name"]: point_metrics(p["workdir"]) if os.path.isdir(p["workdir"]) else ({}, {})
              for p in points}
  keys = list(dict.fromkeys(k for p in points for k in p["overrides"]))
  metrics = ["final_loss"] + sorted({m for _, best in measured.values() for m in best})
  for key in keys:
    if len({p["overrides"][key] for p in points if _is_number(p["overrides"].get(key))}) < 2:
      continue
    groups = colour_groups([p["overrides"] for p in points], key)
    cmap = plt.get_cmap("tab10" if len(groups) <= 10 else "viridis")
    colours = [cmap(i if len(groups) <= 10 else i / (len(groups) - 1))
               for i in range(len(groups))]
    for metric in metrics:
      fig, ax = plt.subplots(figsize=(6, 4))
      drawn, unfinished = [], set()
      for (label, idx), colour in zip(groups, colours):
        xy = []
        for i in idx:
          final, best = measured[points[i]["name"]]
          y = final_loss(final) if metric == "final_loss" else best.get(metric)
          if y is not None:
            xy.append((points[i]["overrides"][key], y, points[i]["status"]))
        done = [(x, y) for x, y, status in xy if status == "done"]
        if done:
          ax.plot([x for x, _ in done], [y for _, y in done], color=colour, marker="o",
                  ms=5, lw=1, label=label or None)
        elif label and xy:   # the group's colour still needs its legend entry
          ax.plot([], [], color=colour, marker="o", lw=1, label=label)
        for x, y, status in xy:
          if status != "done":
            marker, what = UNFINISHED_MARKERS.get(status, ("o", status))
            if marker == "x":
              ax.scatter([x], [y], marker=marker, s=40, color=colour, zorder=3)
            else:   # hollow: not a result yet
              ax.scatter([x], [y], marker=marker, s=40, facecolors="none", edgecolors=colour,
                         zorder=3)
            unfinished.add((marker, what))
        drawn += [x for x, _, _ in xy]
      if not drawn:
        plt.close(fig)
        continue
      handles, _ = ax.get_legend_handles_labels()
      handles += [Line2D([], [], ls="none", marker=marker, color="0.3", label=what,
                         markerfacecolor="0.3" if marker == "x" else "none")
                  for marker, what in sorted(unfinished, key=lambda m: m[1])]
      if handles:
        ax.legend(handles=handles, fontsize=7, title=None)
      ax.set(xlabel=key, ylabel=metric)
      ax.set_title(f"{metric} vs {key}" + (f"\n({caveat})" if caveat and metric == "final_loss"
                                           else ""), fontsize=9)
      if min(drawn) > 0 and max(drawn) / min(drawn) > 20:
        ax.set_xscale("log")
      safe = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{metric}_vs_{key}")
      path = os.path.join(sweep_dir, f"{safe}.png")
      fig.tight_layout()
      fig.savefig(path, dpi=120)
      plt.close(fig)
      written.append(path)
  return written

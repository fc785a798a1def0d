"""The EMA-length sweep after one training run (post-hoc EMA, Karras et al. 2024, EDM2, §3).

  python -m diffusion.sweeps ema DIR --std_rel=0.01,0.02,0.05,0.1 --eval=classifier_fid

DIR is a run trained with ``training.phema_std_rel``. For each σ_rel the EMA of that
length is reconstructed from DIR's snapshots (:mod:`diffusion.train.posthoc_ema`) and
sampled and judged by :func:`diffusion.generate.generate` with the same seed, sample count
and sampler for every length (so the same x_T: the lengths differ in the parameters
only), into ``OUT/std_rel_<σ>/`` (OUT: ``--output``, default ``DIR/ema_sweep``). The
results go into ``OUT/ema_sweep.json`` as each length finishes (a rerun skips the lengths
done; other settings in the same OUT are refused with what changed), and the summary into
``OUT/summary.md`` / ``summary.csv`` (one row per length, the best marked) with
``<metric>_vs_std_rel.png`` for each metric that varies; the summary also gives the σ_rel
of the run's own constant-decay EMA (:func:`diffusion.train.phema.ema_decay_std_rel`).
Every length is checked before anything is sampled.
"""

import csv
import io
import json
import os
import re
from typing import Any, Dict, List, Optional, Sequence

from diffusion import evals, families
from diffusion.config import checks
from diffusion.errors import ConfigError
from diffusion.generate import generate, unused_folder, with_sampler
from diffusion.io import atomic
from diffusion.io.workdir import load_config
from diffusion.train import phema, posthoc_ema

LEDGER = "ema_sweep.json"
MAXIMISED = evals.maximised_metrics()


def parse_lengths(text: str) -> List[float]:
  """``--std_rel=0.01,0.02`` as floats (ConfigError naming the flag when not numbers)."""
  try:
    values = [float(v) for v in text.split(",") if v.strip()]
  except ValueError:
    raise ConfigError(f"--std_rel={text!r} is not a comma-separated list of numbers; give "
                      "e.g. --std_rel=0.01,0.02,0.05,0.1.") from None
  if not values:
    raise ConfigError("give the EMA lengths to sweep: --std_rel=0.01,0.02,0.05,0.1.")
  return sorted(set(values))


def _fmt(v: Any) -> str:
  return f"{v:.5g}" if isinstance(v, float) else str(v)


def ema_sweep(workdir: str, std_rel: Sequence[float], eval_names: Sequence[str], *,
              num_samples: int = 1000, seed: int = 0, sampler: Optional[str] = None,
              steps: Optional[int] = None, batch_size: int = 0, checkpoint_step: int = -1,
              metric: Optional[str] = None, output: str = "", progress: bool = True,
              plots: bool = True) -> str:
  """Samples and judges the post-hoc EMA of each length in ``std_rel``; returns the
  summary's Markdown (also written to ``OUT/summary.md``).

  Args:
    workdir: a run trained with ``training.phema_std_rel``.
    std_rel: the lengths σ_rel.
    eval_names: evaluators of the run's ``config.eval`` that judge each length.
    num_samples, seed, sampler, steps, batch_size: :func:`diffusion.generate.generate`'s,
      the same for every length.
    checkpoint_step: the snapshot step to reconstruct at (-1: the newest).
    metric: the metric that picks the best length (default: the first the evaluators
      return; minimised unless an evaluator maximises it).
    output: the sweep's folder (default ``<workdir>/ema_sweep``).
  Raises:
    ConfigError (one line, before anything is sampled): no lengths or evaluators, a run
    without post-hoc EMA or snapshots, a length the snapshots do not reconstruct, an
    OUT holding a sweep of other settings.
  """
  if not eval_names:
    raise ConfigError("give the evaluators that judge each length, e.g. "
                      "--eval=classifier_fid (the run's config.eval lists them).")
  if num_samples <= 0:
    raise ConfigError(f"--num_samples={num_samples} is not valid; each length is judged on "
                      "samples: give a count > 0.")
  cfg = checks.validate(with_sampler(checks.validate(load_config(workdir)), sampler, steps),
                        num_devices=1)
  family = families.make_family(cfg)
  plans = [posthoc_ema.plan(workdir, family, s, checkpoint_step) for s in std_rel]
  evals.check_applies(cfg, list(eval_names))   # known names that apply to this run
  out = output or os.path.join(workdir, "ema_sweep")
  settings = {"workdir": os.path.abspath(workdir), "step": plans[0].step,
              "sampling": family.sampling_record().name, "seed": seed,
              "num_samples": num_samples, "batch_size": batch_size,
              "evals": list(dict.fromkeys(eval_names)),
              "tracked_std_rel": list(cfg.training.phema_std_rel)}
  ledger = _open_ledger(out, settings)
  # The run's own EMA on the same axis (its checkpoints' constant decay), for comparison.
  decay = cfg.training.ema_decay
  ledger["run_ema"] = {"ema_decay": decay,
                       "std_rel": phema.ema_decay_std_rel(decay, plans[0].step)}
  for made in plans:
    key = f"{made.std_rel:g}"
    if key in ledger["lengths"]:
      print(f"σ_rel {key}: done before ({ledger['lengths'][key]['folder']})", flush=True)
      continue
    print(f"σ_rel {key}: post-hoc EMA at step {made.step} from {len(made.files)} snapshots "
          f"(profile misfit {made.misfit:.2%})", flush=True)
    result = generate(None, workdir, num_samples=num_samples, seed=seed,
                      output=unused_folder(os.path.join(out, f"std_rel_{key}")),
                      evals=settings["evals"], batch_size=batch_size,
                      checkpoint_step=made.step, sampler=sampler, steps=steps,
                      progress=progress, ema_std_rel=made.std_rel)
    ledger["lengths"][key] = {"std_rel": made.std_rel, "step": made.step,
                              "gamma": float(phema.std_to_gamma(made.std_rel)),
                              "snapshots": len(made.files), "misfit": made.misfit,
                              "folder": result.output, "scores": result.scores}
    atomic.write_json(os.path.join(out, LEDGER), ledger)
  return summarize(out, metric=metric, plots=plots)


def load_json(path: str) -> Dict[str, Any]:
  """An EMA-length sweep's ledger; ConfigError naming the file when it is unreadable."""
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(f"{path} is not a readable EMA-length sweep ({e}); move it away (the "
                      "samples beside it stay) or give another --output.") from None
  if not isinstance(data, dict) or not isinstance(data.get("lengths"), dict):
    raise ConfigError(f"{path} is JSON but not an EMA-length sweep (it needs \"settings\" "
                      "and \"lengths\"); move it away or give another --output.")
  return data


def _open_ledger(out: str, settings: Dict[str, Any]) -> Dict[str, Any]:
  """OUT's ledger, created with ``settings``; ConfigError when it holds other settings."""
  path = os.path.join(out, LEDGER)
  if os.path.isfile(path):
    ledger = load_json(path)
    changed = [k for k in settings if ledger.get("settings", {}).get(k) != settings[k]]
    if changed:
      old = ledger.get("settings", {})
      what = "; ".join(f"{k}: {old.get(k)!r} there, {settings[k]!r} now" for k in changed)
      raise ConfigError(f"{out} holds an EMA-length sweep of other settings ({what}); give "
                        "another --output (or the same settings to add lengths).")
    return ledger
  if os.path.exists(out) and not os.path.isdir(out):
    raise ConfigError(f"--output={out} is a file; give a folder.")
  os.makedirs(out, exist_ok=True)
  ledger = {"settings": settings, "lengths": {}}
  atomic.write_json(path, ledger)
  return ledger


def summary_rows(ledger: Dict[str, Any]) -> List[Dict[str, Any]]:
  """One row per length, ascending: σ_rel, γ, step, snapshots, misfit, the scores."""
  rows = []
  for entry in sorted(ledger["lengths"].values(), key=lambda e: e["std_rel"]):
    row = {"std_rel": entry["std_rel"], "gamma": entry["gamma"], "step": entry["step"],
           "snapshots": entry["snapshots"], "profile_misfit": entry["misfit"]}
    row.update(entry["scores"])
    row["folder"] = os.path.basename(entry["folder"])
    rows.append(row)
  return rows


def summarize(out: str, metric: Optional[str] = None, plots: bool = True) -> str:
  """Writes OUT/summary.md, summary.csv and the plots of an EMA-length sweep; returns the
  Markdown."""
  ledger = load_json(os.path.join(out, LEDGER))
  rows = summary_rows(ledger)
  metrics = list(dict.fromkeys(k for r in rows for k in r if k.startswith("eval/")))
  s = ledger["settings"]
  lines = [f"# EMA-length sweep of {s['workdir']} (post-hoc EMA, EDM2 §3)", "",
           f"Each length reconstructed at step {s['step']} from the snapshots of σ_rel "
           f"{tuple(s['tracked_std_rel'])}, then {s['num_samples']} samples "
           f"({s['sampling']}, seed {s['seed']}: the same x_T for every length) judged by "
           f"{', '.join(s['evals'])}."]
  if "run_ema" in ledger:
    own = ledger["run_ema"]
    lines.append(f"The run's own EMA (training.ema_decay = {own['ema_decay']:g}, the "
                 f"checkpoints') is σ_rel = {own['std_rel']:.4g} at this step.")
  if metric is not None:
    metric = evals.logged_name(metric)
  if metric is not None and rows and metric not in metrics:
    raise ConfigError(f"--metric={metric} is not among the metrics of this sweep "
                      f"({', '.join(metrics) or 'none'}); give one of them.")
  if metric is None and metrics:
    metric = metrics[0]
  scored = [r for r in rows if isinstance(r.get(metric), (int, float))]
  if metric is not None and scored:
    mode = "max" if metric in MAXIMISED else "min"
    best = (max if mode == "max" else min)(scored, key=lambda r: r[metric])
    lines.append(f"Best by {metric} ({mode}): σ_rel = {best['std_rel']:g} "
                 f"({metric} {best[metric]:.5g}).")
    for r in rows:
      r["best"] = "*" if r is best else ""
  columns = list(dict.fromkeys(c for r in rows for c in r))
  table = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  table += ["| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
  text = "\n".join(lines) + "\n\n" + "\n".join(table)
  if plots:
    from diffusion import extras  # pylint: disable=import-outside-toplevel
    try:
      extras.require("matplotlib")
      written = write_plots(out, rows, metrics)
      if written:
        text += "\n\nPlots: " + ", ".join(os.path.basename(p) for p in written)
    except ConfigError as e:
      text += f"\n\nNo plots: {e}"
  atomic.write_text(os.path.join(out, "summary.md"), text + "\n")
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=columns)
  writer.writeheader()
  writer.writerows(rows)
  atomic.write_text(os.path.join(out, "summary.csv"), buf.getvalue())
  return text


def write_plots(out: str, rows: Sequence[Dict[str, Any]], metrics: Sequence[str]) -> List[str]:
  """``<metric>_vs_std_rel.png`` for each metric that differs between the lengths (σ_rel
  on a log axis, the best marked); returns the paths."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  written = []
  for m in metrics:
    xy = [(r["std_rel"], r[m]) for r in rows if isinstance(r.get(m), (int, float))]
    if len(xy) < 2 or len({y for _, y in xy}) < 2:
      continue   # the real-data figures (floors, the classifier's accuracy) are constant
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([x for x, _ in xy], [y for _, y in xy], marker="o")
    best = [r for r in rows if r.get("best") == "*" and isinstance(r.get(m), (int, float))]
    if best:
      ax.scatter([best[0]["std_rel"]], [best[0][m]], s=90, facecolors="none", edgecolors="C3",
                 label="best")
      ax.legend(fontsize=7)
    ax.set_xscale("log")
    ax.set(xlabel="EMA length σ_rel (post hoc)", ylabel=m)
    ax.set_title(f"{m} vs EMA length", fontsize=9)
    path = os.path.join(out, re.sub(r"[^A-Za-z0-9._-]+", "-", f"{m}_vs_std_rel") + ".png")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)
  return written

"""Running a baseline: its experiment at a tier's budget, then the table of ours against
the paper, ``DIR/results.json``, and an exit status that says whether every metric is in
its band."""

import datetime
import inspect
import json
import math
import os
import platform
import re
import subprocess
import signal
import sys
import time
from typing import Any, Dict, List, Tuple

import jax

from diffusion import cli, paths
from diffusion.errors import ConfigError, did_you_mean
from diffusion.io import atomic, untrusted
from diffusion.io.workdir import WorkdirLock, check_workdir, make_workdir
from diffusion.reproduce import common, plots
from diffusion.reproduce.registry import BASELINES
from diffusion.reproduce.schema import TIERS, Baseline
from diffusion.train import loop
from diffusion.train.loop import Interrupted


def get(name: str) -> Baseline:
  if name not in BASELINES:
    raise ConfigError(f"no baseline {name!r}{did_you_mean(name, BASELINES)}; "
                      "`python -m diffusion.reproduce list` shows them.")
  return BASELINES[name]


def cpu_name() -> str:
  """The CPU's model name (/proc/cpuinfo), else what ``platform`` knows."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine() -> str:
  dev = jax.devices()[0]
  return (f"{cpu_name()}, {os.cpu_count()} CPUs, {jax.device_count()} x {dev.platform} "
          f"({dev.device_kind}), jax {jax.__version__}")


def commit() -> str:
  try:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=paths.REPO,
                          capture_output=True, text=True, timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return "unknown"


def _fmt(v: Any) -> str:
  if isinstance(v, float):
    return "nan" if math.isnan(v) else f"{v:.6g}"
  if isinstance(v, (tuple, list)) and len(v) == 2:
    return f"[{_fmt(float(v[0]))}, {_fmt(float(v[1]))}]"
  return str(v)


def table(rows: List[Dict[str, Any]]) -> str:
  lines = ["| metric | paper | ours | band | ok |", "|---|---|---|---|---|"]
  for r in rows:
    ours = r["ours"]
    if r.get("claim"):
      ours = "holds" if r["ok"] else "fails"
    lines.append(f"| {r['metric']} | {r['paper']} | {_fmt(ours)} | "
                 f"{'-' if r.get('claim') else _fmt(r['band'])} | {'yes' if r['ok'] else 'NO'} |")
  return "\n".join(lines)


# Written when a reproduction starts in a workdir, so that one interrupted before its
# results.json still names its baseline.
MARKER = "reproduce.json"


def _check_workdir_is_ours(name: str, workdir: str) -> None:
  """ConfigError when ``workdir`` holds the (finished or interrupted) run of another
  baseline."""
  for file in ("results.json", MARKER):
    path = os.path.join(workdir, file)
    if not os.path.isfile(path):
      continue
    with untrusted.reading(path, "reproduction record", fix="move it away, or give another "
                           "--workdir"):
      with open(path, encoding="utf-8") as f:
        data = json.load(f)
      other = untrusted.get(data, "baseline", path, untrusted.text(), None)
    if other not in (None, name):
      raise ConfigError(f"--workdir={workdir} holds the reproduction of {other} ({path}); "
                        f"give {name} its own --workdir.")


def default_workdir(name: str, tier: str) -> str:
  return os.path.join("runs", "reproduce", f"{name}_{tier}")


def command(name: str, tier: str, workdir: str) -> str:
  """The command line that runs (or resumes) ``name`` at ``tier`` in ``workdir``."""
  return f"python -m diffusion.reproduce {name} --tier={tier} --workdir={workdir}"


def run(name: str, tier: str = "cpu", workdir: str = "", seed: int = 0,
        force_tier: bool = False, weights: str = "",
        inception_weights: str = "") -> Tuple[bool, Dict]:
  """Runs baseline ``name`` at ``tier``; prints the table, writes DIR/results.json.

  Raises:
    ConfigError: a bad name, tier or workdir.
    Interrupted: SIGINT/SIGTERM stopped it; no result is written, a rerun resumes.
  """
  b = get(name)
  if tier not in TIERS:
    raise ConfigError(f"--tier={tier!r} is not valid; choose one of {', '.join(TIERS)}.")
  if tier not in b.tiers:
    raise ConfigError(f"{name} has no {tier} tier; it has {', '.join(b.tiers)}.")
  platform_ = jax.devices()[0].platform
  if tier != "cpu" and platform_ == "cpu" and not force_tier:
    raise ConfigError(f"--tier={tier} assumes an accelerator ({b.tiers[tier].machine}) but "
                      "JAX sees only the CPU; use --tier=cpu, or add --force_tier to run it "
                      "on the CPU anyway.")
  budget = b.budget(tier)
  experiment = b.experiment
  inputs = {k: v for k, v in (("weights", weights), ("inception_weights", inception_weights))
            if v}
  takes = inspect.signature(experiment).parameters
  for flag in inputs:
    if flag not in takes:
      raise ConfigError(f"--{flag} is for the entries that evaluate released weights; {name} "
                        "trains its own model.")
  workdir = workdir or default_workdir(name, tier)
  check_workdir(workdir)
  _check_workdir_is_ours(name, workdir)
  make_workdir(workdir)   # a path the system refuses: one line, no folder left
  missing = plots.missing_line(name, experiment)
  if missing:   # said before the experiment computes, not found at its end
    print(missing, file=sys.stderr, flush=True)
  start = time.time()
  resume = command(name, tier, workdir)
  try:
    with WorkdirLock(workdir):
      if not os.path.exists(os.path.join(workdir, MARKER)):
        atomic.write_json(os.path.join(workdir, MARKER), {"baseline": name, "command": resume})
      outcome = experiment(b, budget, workdir, seed, **inputs)
      common.check_stop()   # a signal whose KeyboardInterrupt a library swallowed
  except (Interrupted, KeyboardInterrupt) as e:
    what = str(e).rstrip(".") if isinstance(e, Interrupted) else "interrupted"
    raise Interrupted(f"{what}; no result was written; what was saved is kept, resume with: "
                      f"{resume}") from None
  wall = time.time() - start
  rows = []
  for m in b.metrics:
    ours = outcome.measured.get(m.name)
    rows.append({"metric": m.name, "paper": m.paper, "ours": ours, "band": list(m.band),
                 "ok": m.judge(ours), "why": m.why, "protocol": m.protocol, "claim": m.claim})
  ok = all(r["ok"] for r in rows)
  drawn = [p for p in outcome.pictures if os.path.exists(p)]
  not_drawn = [os.path.relpath(p, workdir) for p in outcome.pictures if p not in drawn]
  result = {"baseline": name, "paper": b.paper, "where": b.where, "dataset": b.dataset,
            "tier": tier, "ok": ok, "rows": rows, "measured": outcome.measured,
            "details": outcome.details, "pictures": [os.path.relpath(p, workdir)
                                                      for p in drawn],
            "commit": commit(), "machine": machine(), "wall_time_s": round(wall, 1),
            "date": datetime.date.today().isoformat(),
            "command": resume, "note": b.note}
  if not_drawn:
    result["pictures_missing"] = {"files": not_drawn,
                                  "why": f"matplotlib is not installed: {plots.INSTALL}"}
  atomic.write_json(os.path.join(workdir, "results.json"), result)
  print(f"{b.paper}, {b.where} ({b.dataset}), tier {tier}: {wall / 60:.1f} min on {machine()}")
  print(table(rows))
  for r in rows:
    print(f"  {r['metric']}: {r['protocol']} Band: {r['why']}")
  print(f"wrote {os.path.join(workdir, 'results.json')}"
        + (f" and {', '.join(result['pictures'])}" if result["pictures"] else ""))
  if not_drawn:
    print(f"not drawn (matplotlib is not installed: {plots.INSTALL}, then run the same "
          f"command again): {', '.join(not_drawn)}")
  return ok, result


# The listing's metric cell names at most this many metrics (the README's table has them all).
LISTED_METRICS = 3


def listing() -> str:
  """``python -m diffusion.reproduce list``: one short row per entry (name, paper and where,
  dataset, each tier's expected minutes and machine, the first metrics by name); the
  paper's values and our bands are in docs/reproducing.md's table (:func:`readme_table`)."""
  lines = ["| name | paper, where | dataset | tiers: minutes on | metrics |",
           "|---|---|---|---|---|"]
  for name, b in BASELINES.items():
    tiers = ", ".join(f"{t}: {bud.minutes:g} on {bud.machine}" for t, bud in b.tiers.items())
    names = [m.name for m in b.metrics]
    metrics = ", ".join(names[:LISTED_METRICS]) + (
        f" (+{len(names) - LISTED_METRICS} more)" if len(names) > LISTED_METRICS else "")
    lines.append(f"| {name} | {b.paper}, {b.where} | {b.dataset} | {tiers} | {metrics} |")
  lines.append("\nEach entry's paper values and acceptance bands: docs/reproducing.md; "
               "run one with python -m diffusion.reproduce NAME.")
  return "\n".join(lines)


def first_clause(text: str) -> str:
  """``text`` up to its first ':', ';', ',' or ' (' (a band's reason, shortened)."""
  return re.split(r"[:;,]| \(", text, maxsplit=1)[0].strip()


def _expected(m) -> str:
  """``metric: paper → band``; a band that excludes the paper's value says why, briefly."""
  out = f"{m.name}: {m.paper} → " + ("holds" if m.claim else _fmt(m.band))
  if m.excludes_paper:
    out += f" (band excludes the paper's value: {first_clause(m.why)})"
  return out


def readme_table() -> str:
  """The table of docs/reproducing.md (the README links it): every entry, its expected numbers and
  bands (with a short reason where a band excludes the paper's value), the budgets and
  the command (tests check that docs/reproducing.md holds it verbatim)."""
  lines = ["| baseline | paper, where | dataset | expected (paper → our band) | budgets | command |",
           "|---|---|---|---|---|---|"]
  for name, b in BASELINES.items():
    expected = "; ".join(_expected(m) for m in b.metrics)
    budgets = ", ".join(f"{t}: {bud.minutes:g} min on {bud.machine}"
                        + ("" if bud.runnable_here else " (not run here)")
                        for t, bud in b.tiers.items())
    tier = next(iter(b.tiers))
    cmd = f"`python -m diffusion.reproduce {name}" + ("" if tier == "cpu" else f" --tier={tier}") + "`"
    lines.append(f"| `{name}` | {b.paper}, {b.where} | {b.dataset} | {expected} | {budgets} | "
                 f"{cmd} |")
  return "\n".join(lines)


def main(name: str, tier: str = "cpu", workdir: str = "", seed: int = 0,
         force_tier: bool = False, weights: str = "", inception_weights: str = "") -> int:
  """``python -m diffusion.reproduce NAME ...`` once its flags are parsed: :func:`run` with
  SIGINT / SIGTERM as "save, then stop". Returns the exit status: 0 every metric in its
  band, 1 not, 2 an error or an interruption (one ``error:`` line, with the command that
  resumes)."""
  # SIGTERM acts like Ctrl-C (the training loop turns both into "save, then stop").
  loop.PENDING_STOP.clear()
  # A KeyboardInterrupt raised in a library callback is swallowed (and would be printed as
  # a traceback); check_stop acts on it instead.
  sys.unraisablehook = loop.drop_swallowed_interrupts
  for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, loop.interrupt)
  try:
    ok, _ = run(name, tier, workdir, seed, force_tier, weights, inception_weights)
  except ConfigError as e:
    cli.error(str(e))
    return 2
  except KeyboardInterrupt:   # outside the experiment: before it, or while writing the result
    cli.error("interrupted; run the same command again to resume: "
              f"{command(name, tier, workdir or default_workdir(name, tier))}")
    return 2
  return 0 if ok else 1

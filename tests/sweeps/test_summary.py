"""diffusion/sweeps/summary.py: a grid's summary: colour groups, which keys change the
loss, the comparability note, the plots, and tables without matplotlib."""

import csv
import glob
import importlib
import json
import os
import sys

import pytest

from diffusion import sweeps, trees
from diffusion.sweeps import grid, summary

from tests.sweeps.test_grid import toy_file_config


def _fake_sweep(sweep_dir, config, points, statuses=None):
  """A sweep DIR as training leaves it, without training: the ledger, and each started
  point's config.json and metrics.jsonl (10 rows)."""
  from diffusion.io.workdir import config_json  # pylint: disable=import-outside-toplevel
  names = sweeps.point_names(points)
  sweep_dir.mkdir(parents=True, exist_ok=True)
  ledger = sweeps.Ledger.open(str(sweep_dir), "configs/fake.py", "fake", {}, names, points)
  for i, (name, point) in enumerate(zip(names, points)):
    status = statuses[i] if statuses else "done"
    if status != "pending":
      folder = sweep_dir / name
      folder.mkdir()
      (folder / "config.json").write_text(config_json(grid.point_config(config, point)))
      rows = [{"step": s, "loss": 1.0 + i + 10.0 / s} for s in range(10, 101, 10)]
      rows[-1]["eval/fid"] = 50.0 - i
      (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ledger.set(name, status)
  return names


def test_colour_groups_are_the_other_keys_values():
  points = sweeps.product(sweeps.sweep("optim.lr", [4e-4, 1e-4, 2e-4]),
                          sweeps.sweep("training.seed", [0, 1]))
  # x = lr: one line per seed, its points in the order of lr.
  assert summary.colour_groups(points, "optim.lr") == [("seed=0", [2, 4, 0]),
                                                       ("seed=1", [3, 5, 1])]
  # x = seed: one line per lr.
  assert summary.colour_groups(points, "training.seed") == [
      ("lr=0.0004", [0, 1]), ("lr=0.0001", [2, 3]), ("lr=0.0002", [4, 5])]
  # One swept axis: one group, one colour, no legend text.
  assert summary.colour_groups(sweeps.sweep("optim.lr", [2e-4, 1e-4]), "optim.lr") == [
      ("", [1, 0])]
  # Three axes: the combination of the two others; keys sharing a last name stay whole.
  three = sweeps.product(sweeps.sweep("optim.eps", [1e-8, 1e-6]),
                         sweeps.sweep("diffusion.eps", [0.5]),
                         sweeps.sweep("data.dataset", ["a", "b"]))
  assert summary.colour_groups(three, "optim.eps") == [
      ("diffusion.eps=0.5, dataset=a", [0, 2]), ("diffusion.eps=0.5, dataset=b", [1, 3])]
  # A chain: points that leave a key to the config; values that are not numbers drop out.
  chained = sweeps.chain(sweeps.sweep("optim.lr", [1e-3, 2e-3]),
                         sweeps.product(sweeps.sweep("optim.lr", [1e-3]),
                                        sweeps.sweep("training.seed", [3])),
                         sweeps.sweep("optim.lr", ["high", True]))
  assert summary.colour_groups(chained, "optim.lr") == [("seed=(base)", [0, 1]),
                                                        ("seed=3", [2])]


def test_loss_changing_keys_from_the_points_configs():
  ncsn = importlib.import_module("configs.ncsn.toy_mixture").get_config()
  ddpm = toy_file_config()

  def keys(config, points, started=True):
    return summary.loss_changing_keys(points, [
        trees.flatten(grid.point_config(config, p).to_dict(), sep=".") if started
        else None for p in points])

  sigmas = importlib.import_module("configs.ncsn.toy_mixture").sweep_sigmas()
  assert keys(ncsn, sigmas) == ["diffusion.sigma_max", "diffusion.num_timesteps"]
  assert keys(ddpm, sweeps.parse_grid("optim.lr=1e-4,2e-4;training.seed=0,1")) == []
  assert keys(ddpm, sweeps.parse_grid("training.batch_size=64,128;model.hidden_dims=(32,),(64,)")) == []
  assert keys(ddpm, sweeps.parse_grid("diffusion.schedule=cosine,linear")) == ["diffusion.schedule"]
  assert keys(ddpm, sweeps.parse_grid("diffusion.loss_weighting=none,snr")) == [
      "diffusion.loss_weighting"]
  assert keys(ddpm, sweeps.parse_grid("data.centered=True,False")) == ["data.centered"]
  # One value for every point: the loss still compares.
  assert keys(ddpm, sweeps.parse_grid("diffusion.schedule=cosine;optim.lr=1e-4,2e-4")) == []
  # A field only some losses or processes read: the σ ladder of a VP process, λ of mse.
  assert keys(ddpm, sweeps.parse_grid("diffusion.sigma_max=2.0,4.0")) == []
  assert keys(ddpm, sweeps.parse_grid("diffusion.hybrid_lambda=0.001,0.01")) == []
  hybrid = toy_file_config(**{"diffusion.loss": "hybrid", "diffusion.var_type": "learned_range",
                              "diffusion.decoder": "gaussian", "model.out_channels": 4})
  assert keys(hybrid, sweeps.parse_grid("diffusion.hybrid_lambda=0.001,0.01")) == [
      "diffusion.hybrid_lambda"]
  # No config.json yet: every listed field counts.
  assert keys(ddpm, sweeps.parse_grid("diffusion.sigma_max=2.0,4.0"), started=False) == [
      "diffusion.sigma_max"]
  with pytest.raises(ValueError, match="one config"):
    summary.loss_changing_keys([{"optim.lr": 1.0}], [])


def test_summary_says_when_the_loss_is_not_comparable(tmp_path):
  ncsn = importlib.import_module("configs.ncsn.toy_mixture")
  _fake_sweep(tmp_path / "sigmas", ncsn.get_config(), ncsn.sweep_sigmas())
  text = sweeps.summarize(str(tmp_path / "sigmas"), plots=False)
  label = "not comparable across points: sweeps diffusion.sigma_max, diffusion.num_timesteps"
  first, table = text.split("\n\n", 1)
  assert first.startswith("The training loss is not comparable across points") and \
      "diffusion.sigma_max, diffusion.num_timesteps" in first
  assert table.splitlines()[0].startswith(f"| point | status | overrides | steps | final_loss "
                                          f"({label}) |")
  assert (tmp_path / "sigmas" / "summary.md").read_text() == text + "\n"
  assert (tmp_path / "sigmas" / "summary.csv").read_text().splitlines()[0].split(",")[4] == \
      "final_loss"
  lr = sweeps.parse_grid("optim.lr=1e-4,2e-4;training.seed=0,1")
  _fake_sweep(tmp_path / "lr", toy_file_config(), lr)
  text = sweeps.summarize(str(tmp_path / "lr"), plots=False)
  assert "comparable" not in text
  assert text.splitlines()[0].startswith("| point | status | overrides | steps | final_loss |")


def test_summary_plots_colour_by_the_other_keys_and_label_the_loss(tmp_path, monkeypatch):
  pytest.importorskip("matplotlib")
  import matplotlib.figure  # pylint: disable=import-outside-toplevel
  drawn = {}
  real_savefig = matplotlib.figure.Figure.savefig

  def savefig(fig, path, **kw):   # what each plot says, not its pixels
    ax = fig.axes[0]
    legend = ax.get_legend()
    drawn[os.path.basename(path)] = {
        "title": ax.get_title(),
        "legend": [t.get_text() for t in legend.get_texts()] if legend else [],
        "colours": {tuple(line.get_color()) for line in ax.lines if len(line.get_xdata())}}
    return real_savefig(fig, path, **kw)

  monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
  ncsn = importlib.import_module("configs.ncsn.toy_mixture")
  points = ncsn.sweep_sigmas()
  statuses = ["done"] * 4 + ["failed", "pending"]
  _fake_sweep(tmp_path, ncsn.get_config(), points, statuses)
  sweeps.summarize(str(tmp_path))
  label = "not comparable across points: sweeps diffusion.sigma_max, diffusion.num_timesteps"
  assert set(drawn) == {"loss_curves.png", "final_loss_vs_diffusion.sigma_max.png",
                        "final_loss_vs_diffusion.num_timesteps.png",
                        "eval-fid_vs_diffusion.sigma_max.png",
                        "eval-fid_vs_diffusion.num_timesteps.png"}
  assert label in drawn["loss_curves.png"]["title"]
  vs_sigma = drawn["final_loss_vs_diffusion.sigma_max.png"]
  assert label in vs_sigma["title"]
  assert vs_sigma["legend"] == ["num_timesteps=5", "num_timesteps=10", "failed"]
  assert len(vs_sigma["colours"]) == 2                       # a line per L
  assert drawn["final_loss_vs_diffusion.num_timesteps.png"]["legend"] == [
      "sigma_max=10", "sigma_max=20", "sigma_max=40", "failed"]
  assert "comparable" not in drawn["eval-fid_vs_diffusion.sigma_max.png"]["title"]
  # One swept axis: one colour, and no legend to read.
  drawn.clear()
  _fake_sweep(tmp_path / "one", toy_file_config(), sweeps.parse_grid("optim.lr=1e-4,2e-4,4e-4"))
  sweeps.summarize(str(tmp_path / "one"))
  one = drawn["final_loss_vs_optim.lr.png"]
  assert one["legend"] == [] and len(one["colours"]) == 1 and "comparable" not in one["title"]


def test_summary_without_matplotlib_writes_the_tables_and_says_so(tmp_path, monkeypatch):
  _fake_sweep(tmp_path, toy_file_config(), sweeps.parse_grid("optim.lr=1e-4,2e-4"))
  monkeypatch.setitem(sys.modules, "matplotlib", None)   # as in a `pip install .` venv
  text = sweeps.summarize(str(tmp_path))
  assert text.splitlines()[-1].startswith("No plots: plots (sweep summaries") and \
      "pip install '.[plots]'" in text
  assert (tmp_path / "summary.md").read_text() == text + "\n"
  assert (tmp_path / "summary.csv").exists() and not glob.glob(str(tmp_path / "*.png"))


def test_final_loss_is_the_last_interval_mean(tmp_path):
  """The summary's final_loss is the last row's loss_mean (the loop's mean over the log
  interval) rather than its single-batch loss; a run logged before loss_mean existed keeps
  its last loss."""
  lr = sweeps.parse_grid("optim.lr=1e-4,2e-4")
  names = _fake_sweep(tmp_path / "lr", toy_file_config(), lr)
  with_mean = tmp_path / "lr" / names[0] / "metrics.jsonl"
  rows = [json.loads(line) for line in with_mean.read_text().splitlines()]
  for r in rows:
    r["loss_mean"] = r["loss"] + 0.25      # any value the last batch's loss is not
  with_mean.write_text("".join(json.dumps(r) + "\n" for r in rows))
  sweeps.summarize(str(tmp_path / "lr"), plots=False)
  table = {r["point"]: r for r in csv.DictReader(open(tmp_path / "lr" / "summary.csv"))}
  assert float(table[names[0]]["final_loss"]) == rows[-1]["loss_mean"]
  assert float(table[names[1]]["final_loss"]) == 1.0 + 1 + 10.0 / 100   # the last loss


def test_loss_curves_are_interval_means(tmp_path, monkeypatch):
  """loss_curves.png draws each row's loss_mean (the mean over its log interval), not the
  row's single-batch loss; a run without loss_mean draws its losses."""
  pytest.importorskip("matplotlib")
  import matplotlib.figure  # pylint: disable=import-outside-toplevel
  names = _fake_sweep(tmp_path, toy_file_config(), sweeps.parse_grid("optim.lr=1e-4,2e-4"))
  path = tmp_path / names[0] / "metrics.jsonl"
  rows = [json.loads(line) for line in path.read_text().splitlines()]
  for i, r in enumerate(rows):
    r["loss_mean"] = 7.0 + i                 # nothing a batch's loss here is
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  curves = {}
  real_savefig = matplotlib.figure.Figure.savefig

  def savefig(fig, out, **kw):
    if os.path.basename(out) == "loss_curves.png":
      curves.update({line.get_label(): list(line.get_ydata()) for line in fig.axes[0].lines})
    return real_savefig(fig, out, **kw)

  monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
  sweeps.summarize(str(tmp_path))
  assert curves[names[0]] == [7.0 + i for i in range(len(rows))]
  others = [json.loads(line) for line in (tmp_path / names[1] / "metrics.jsonl").read_text()
            .splitlines() if "loss" in json.loads(line)]
  assert curves[names[1]] == [r["loss"] for r in others]

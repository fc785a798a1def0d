"""diffusion/reproduce/runner.py: the table of docs/reproducing.md, tiers and weights flags refused
before anything runs, interrupted reproductions that write no result, and workdirs that
hold another reproduction; without matplotlib, one line before the experiment and a
results.json whose pictures are marked missing."""

import dataclasses
import json
import os
import sys

import pytest

from diffusion.reproduce import generic, plots, runner
from diffusion.reproduce.papers import ncsn
from diffusion.reproduce.registry import BASELINES
from diffusion.train.loop import Interrupted
from diffusion.paths import REPO



def _fake_experiment(monkeypatch, behaviour):
  b = runner.get("ncsn_fig3_learned")
  monkeypatch.setitem(runner.BASELINES, b.name, dataclasses.replace(b, experiment=behaviour))


# ---- docs/reproducing.md's table ------------------------------------------------------------


def test_a_band_that_excludes_the_papers_value_says_why_in_the_readme_table():
  from diffusion.reproduce.schema import Metric  # pylint: disable=import-outside-toplevel
  assert Metric("k", 2.35, (-2.69, -1.19), "w", "p").excludes_paper
  assert not Metric("k", -1.19, (-2.69, -1.19), "w", "p").excludes_paper   # bands are closed
  assert not Metric("k", "K ≤ log p", (0.0, 1.5), "w", "p").excludes_paper  # a phrase
  table = runner.readme_table()
  roll = next(line for line in table.splitlines() if line.startswith("| `dpm_swiss_roll` |"))
  assert ("K_bits: 2.35 → [-2.69, -1.19] (band excludes the paper's value: the paper's roll "
          "is not published and K is bounded by the roll's own log-likelihood); "
          "gap_to_exact_bits: K ≤ log p → [0, 1.5] |") in roll
  excluded = [m for b in BASELINES.values() for m in b.metrics if m.excludes_paper]
  assert table.count("band excludes the paper's value") == len(excluded) >= 1


def test_reproducing_page_is_the_registry_table():
  with open(os.path.join(REPO, "docs", "reproducing.md"), encoding="utf-8") as f:
    page = f.read()
  assert runner.readme_table() in page, "regenerate it: runner.readme_table()"


# ---- refused before anything runs -----------------------------------------------------------


@pytest.mark.parametrize("name", ["ddpm_cifar10_weights", "ddim_cifar10_weights",
                                  "fast_samplers_cifar10_weights", "ncsnv2_cifar10_weights"])
def test_weights_entries_fail_fast_in_one_line_without_their_inputs(name, tmp_path):
  """No --weights, a --weights folder without a run, no Inception weights: one line each,
  before anything is sampled; and the weights tier is refused on a CPU without --force_tier."""
  from diffusion.errors import ConfigError  # pylint: disable=import-outside-toplevel
  with pytest.raises(ConfigError, match="--force_tier"):
    runner.run(name, "weights", str(tmp_path / "a"))
  with pytest.raises(ConfigError, match="pretrained import") as err:
    runner.run(name, "weights", str(tmp_path / "b"), force_tier=True)
  assert "\n" not in str(err.value)
  with pytest.raises(ConfigError, match="no config.json"):
    runner.run(name, "weights", str(tmp_path / "c"), force_tier=True, weights=str(tmp_path))
  run_dir = tmp_path / "imported"
  run_dir.mkdir()
  (run_dir / "config.json").write_text("{}")
  with pytest.raises(ConfigError, match="--inception_weights"):
    runner.run(name, "weights", str(tmp_path / "d"), force_tier=True, weights=str(run_dir))
  assert not (tmp_path / "d" / "results.json").exists()


def test_weights_flags_are_refused_by_entries_that_train(tmp_path):
  from diffusion.errors import ConfigError  # pylint: disable=import-outside-toplevel
  with pytest.raises(ConfigError, match="trains its own model"):
    runner.run("ncsn_fig3_exact", "cpu", str(tmp_path), weights=str(tmp_path))


def test_gpu_tier_on_a_cpu_is_refused(tmp_path, capsys):
  w = tmp_path / "w"
  assert runner.main("ddpm_mnist", tier="gpu", workdir=str(w)) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "--force_tier" in err[0] and "only the CPU" in err[0]
  assert not w.exists()


def test_reproduce_refuses_another_baselines_workdir(tmp_path, capsys):
  w = tmp_path / "w"
  w.mkdir()
  (w / "results.json").write_text(json.dumps({"baseline": "ncsn_fig3_learned"}))
  assert runner.main("dpm_swiss_roll", workdir=str(w)) == 2
  assert "holds the reproduction of ncsn_fig3_learned" in capsys.readouterr().err
  assert os.listdir(w) == ["results.json"]


def test_reproduce_refuses_the_workdir_of_another_interrupted_baseline(tmp_path, monkeypatch,
                                                                      capsys):
  def experiment(baseline, budget, workdir, seed):
    raise Interrupted("SIGINT stopped training at step 2 (checkpoint saved)")
  _fake_experiment(monkeypatch, experiment)
  w = tmp_path / "w"
  assert runner.main("ncsn_fig3_learned", workdir=str(w)) == 2
  files = sorted(os.listdir(w))
  assert files == [".lock", "reproduce.json"]   # no results.json, but the owner is named
  capsys.readouterr()
  assert runner.main("dpm_swiss_roll", workdir=str(w)) == 2
  assert "holds the reproduction of ncsn_fig3_learned" in capsys.readouterr().err
  assert sorted(os.listdir(w)) == files


# ---- interrupted reproductions write no result ----------------------------------------------


@pytest.mark.parametrize("stop", ["training", "evaluation"])
def test_interrupted_reproduction_writes_no_result(tmp_path, monkeypatch, capsys, stop):
  def experiment(baseline, budget, workdir, seed):
    if stop == "training":
      raise Interrupted("SIGINT stopped training at step 2 (checkpoint saved)")
    raise KeyboardInterrupt   # Ctrl-C during an evaluation
  _fake_experiment(monkeypatch, experiment)
  w = str(tmp_path / "w")
  assert runner.main("ncsn_fig3_learned", workdir=w) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: ") and "resume with: python -m " \
      f"diffusion.reproduce ncsn_fig3_learned --tier=cpu --workdir={w}" in err[0]
  assert not os.path.exists(os.path.join(w, "results.json"))


def test_interrupt_outside_the_experiment_is_one_line(tmp_path, monkeypatch, capsys):
  from diffusion.reproduce.schema import Outcome
  _fake_experiment(monkeypatch, lambda *args: Outcome({}))

  def interrupted():
    raise KeyboardInterrupt   # Ctrl-C while the result is being put together

  monkeypatch.setattr(runner, "commit", interrupted)
  w = str(tmp_path / "w")
  assert runner.main("ncsn_fig3_learned", workdir=w) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err == ["error: interrupted; run the same command again to resume: python -m "
                 f"diffusion.reproduce ncsn_fig3_learned --tier=cpu --workdir={w}"]
  assert not os.path.exists(os.path.join(w, "results.json"))


# ---- without matplotlib: said before computing, results.json written -----------------------


def test_without_matplotlib_a_reproduction_says_so_first_and_writes_its_results(
    tmp_path, monkeypatch, capsys):
  """ncsn_fig3_exact in the light install (matplotlib not importable): the one warning line
  is out before the experiment computes (seen from inside it), the numbers are judged and
  written, the figure is listed as missing with the install line, nothing half-drawn."""
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  said_before = []

  def shares(*args):   # the experiment's computation, replaced by its known result
    said_before.append(capsys.readouterr().err)
    return {"annealed": 0.8, "plain": 0.5, "points": None}

  monkeypatch.setattr(ncsn, "_langevin_shares", shares)
  ok, result = runner.run("ncsn_fig3_exact", "cpu", str(tmp_path))
  (line,) = said_before[0].strip().splitlines()
  assert line == ("warning: matplotlib is not installed, so ncsn_fig3_exact will compute its "
                  "numbers and write results.json but draw no figures (marked missing there); "
                  "pip install '.[plots]' to draw them.")
  saved = json.load(open(tmp_path / "results.json"))
  assert ok and saved == result and saved["pictures"] == []
  assert saved["pictures_missing"] == {"files": ["ncsn_fig3_exact.png"],
                                       "why": "matplotlib is not installed: pip install "
                                              "'.[plots]'"}
  assert not (tmp_path / "ncsn_fig3_exact.png").exists()
  assert "not drawn (matplotlib is not installed" in capsys.readouterr().out
  # An entry that draws no figures says nothing; with matplotlib, none says anything.
  assert plots.missing_line("vae_mnist", generic.train_evaluate) is None
  monkeypatch.delitem(sys.modules, "matplotlib")
  assert plots.missing_line("ncsn_fig3_exact", ncsn.ncsn_toy_exact) is None

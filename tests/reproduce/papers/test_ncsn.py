"""diffusion/reproduce/papers/ncsn.py: NCSN's Fig. 3 (exact and learned score) and the
RefineNet against the U-Net on digits, at the CPU tier, and the figure's panels."""

import json
import os

import numpy as np
import pytest

from diffusion.reproduce import runner


def _check_result(workdir, name):
  result = json.load(open(os.path.join(workdir, "results.json")))
  assert result["baseline"] == name and result["tier"] == "cpu"
  assert result["commit"] and result["machine"] and result["wall_time_s"] > 0
  for picture in result["pictures"]:
    assert os.path.isfile(os.path.join(workdir, picture))
  return result


LONG = os.environ.get("DIFFUSION_LONG_TESTS") == "1"


def test_ncsn_fig3_with_the_exact_score(tmp_path):
  ok, result = runner.run("ncsn_fig3_exact", "cpu", str(tmp_path))
  assert ok, result["rows"]
  _check_result(str(tmp_path), "ncsn_fig3_exact")
  assert result["pictures"] == ["ncsn_fig3_exact.png"]


@pytest.mark.slow
def test_ncsn_fig3_with_a_learned_score(tmp_path):
  ok, result = runner.run("ncsn_fig3_learned", "cpu", str(tmp_path))
  assert ok, result["rows"]
  _check_result(str(tmp_path), "ncsn_fig3_learned")


@pytest.mark.slow
@pytest.mark.skipif(not LONG, reason="trains NCSN's RefineNet and the U-Net on digits and "
                    "samples 297 digits from each with 1,000 Langevin steps (~15 min on 2 "
                    "CPU cores, 26 when shared; beyond the suite's budget); run with "
                    "DIFFUSION_LONG_TESTS=1")
def test_ncsn_refinenet_against_the_unet_on_digits(tmp_path):
  """The entry from scratch: both networks trained with one budget, both judged."""
  ok, result = runner.run("ncsn_digits_refinenet", "cpu", str(tmp_path))
  assert ok, result["rows"]
  _check_result(str(tmp_path), "ncsn_digits_refinenet")
  assert sorted(result["pictures"]) == ["ncsn_fig4_refinenet.png", "ncsn_fig5_refinenet.png",
                                        "ncsn_fig5_unet.png"]
  refinenet, unet = result["details"]["refinenet"], result["details"]["unet"]
  assert (refinenet["params"], unet["params"]) == (518_817, 651_041)
  assert refinenet["step"] == unet["step"] == 2000
  m = result["measured"]
  assert m["cfid_refinenet_over_unet"] == pytest.approx(m["cfid_refinenet"] / m["cfid_unet"])


def test_fig3_panels_name_the_seed_shown_and_the_mean_the_table_reports(tmp_path, monkeypatch):
  """The points are the last seed's; the title gives its share and the mean."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  from diffusion.reproduce.papers import ncsn  # pylint: disable=import-outside-toplevel
  figures = []
  monkeypatch.setattr(plt, "close", figures.append)
  points = np.array([[5.0, 5.0]] * 3 + [[-5.0, -5.0]])          # 0.75 nearer (5, 5)
  shares = {"points": {"plain": points, "annealed": points}, "plain": 0.5, "plain_se": 0.01,
            "annealed": 0.774, "annealed_se": 0.008}
  ncsn._plot_langevin(str(tmp_path / "fig3.png"), shares, 10, "NCSN Fig. 3")
  plain, annealed = (ax.get_title() for ax in figures[0].axes)
  assert annealed.endswith("seed 10 of 10: 0.750 at (5, 5); mean of 10 seeds 0.774 ± 0.008")
  assert plain.endswith("seed 10 of 10: 0.750 at (5, 5); mean of 10 seeds 0.500 ± 0.010")

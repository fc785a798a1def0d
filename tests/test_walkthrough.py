"""docs/walkthrough.ipynb runs top to bottom (nbclient), is stored without outputs, and its
pictures show what its text says: digits a classifier recognises, and a VAE manifold.
Its run time is measured, not asserted (README, "Python API"; tests never time)."""

import os

import pytest

from diffusion.paths import REPO

NOTEBOOK = os.path.join(REPO, "docs", "walkthrough.ipynb")


def test_notebook_is_stored_without_outputs():
  nbformat = pytest.importorskip("nbformat")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert not cell.outputs and cell.execution_count is None


@pytest.mark.slow
def test_notebook_runs_and_shows_digits(tmp_path, monkeypatch):
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  pytest.importorskip("matplotlib")
  import diffusion  # pylint: disable=import-outside-toplevel
  monkeypatch.setenv("WALKTHROUGH_DIR", str(tmp_path))
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                          resources={"metadata": {"path": REPO}}).execute()
  assert os.path.exists(tmp_path / "ddpm_digits" / "metrics.jsonl")
  assert os.path.isdir(tmp_path / "vae_digits" / "checkpoints")
  images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.outputs
               if "image/png" in o.get("data", {}))
  assert images == 4, images
  text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                 for o in c.outputs)
  assert "alpha_bar_T = 4.0e-05" in text and "warning:" not in text
  # The notebook's DDPM draws digits: 256 DPM-Solver++ samples (its grid's sampler) judged
  # by the digits classifier (BENCHMARKS.md, "Quickstart"): 600 steps gave 41% and 40%
  # confident for two seeds of 512 (real test digits: 77%); an untrained or unconverged
  # model gives a few per cent. 25% is 5 standard errors (3%) below what it gives.
  out = diffusion.generate(None, str(tmp_path / "ddpm_digits"), num_samples=256,
                           evals=["classifier_fid"], output=str(tmp_path / "judged"),
                           progress=False)
  assert out.scores["eval/confident"] >= 0.25 and out.scores["eval/classes"] >= 9, out.scores
  # Its VAE picture is a manifold, not one glyph repeated: the decoded means over the
  # latent plane (the notebook's 15 x 15 quantile grid) are classified as at least 6 digits.
  import statistics  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from diffusion.evals import classifier  # pylint: disable=import-outside-toplevel
  vae = diffusion.load(str(tmp_path / "vae_digits"))
  q = np.array([statistics.NormalDist().inv_cdf(p) for p in np.linspace(0.05, 0.95, 15)],
               np.float32)
  pictures = np.asarray(vae.decode(np.stack(np.meshgrid(q, q), -1).reshape(-1, 2)))
  split = lambda name: diffusion.make_source({"dataset": "digits"}, name).arrays  # noqa: E731
  net = classifier.load_or_train("digits_8px", split("train"), split("test"))
  assert len(set(np.argmax(net.probs(pictures), axis=1).tolist())) >= 6

"""docs/walkthrough.ipynb runs top to bottom (nbclient) in under two minutes, and is
stored without outputs."""

import os
import time

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
def test_notebook_runs_in_under_two_minutes(tmp_path, monkeypatch):
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  pytest.importorskip("matplotlib")
  monkeypatch.setenv("WALKTHROUGH_DIR", str(tmp_path))
  nb = nbformat.read(NOTEBOOK, as_version=4)
  start = time.time()
  nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                          resources={"metadata": {"path": REPO}}).execute()
  seconds = time.time() - start
  assert os.path.exists(tmp_path / "ddpm_digits" / "metrics.jsonl")
  assert os.path.isdir(tmp_path / "vae_digits" / "checkpoints")
  images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.outputs
               if "image/png" in o.get("data", {}))
  assert images == 4, images
  assert seconds < 120, f"the walkthrough took {seconds:.0f}s"

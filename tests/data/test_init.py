"""diffusion/data/__init__.py: importing the data package does not import TensorFlow."""

import os
import subprocess
import sys

from diffusion.paths import REPO
from tests.conftest import stderr_tail



def test_import_is_light():
  code = ("import sys, diffusion.data; "
          "print(any(m in sys.modules for m in ('tensorflow', 'tensorflow_datasets')))")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=120)
  assert out.returncode == 0, stderr_tail(out.stderr, 2000)
  assert out.stdout.strip() == "False"

"""Where the repository is: the one module that computes it (from its own location).

``REPO`` is the folder that holds ``diffusion/``, ``configs/`` and ``README.md`` (a
checkout; for an installed wheel, the site-packages folder, where ``configs/`` ships beside
``diffusion/``). Config files named relative to the repository (``configs/ddpm/cifar10.py``)
and the shared data of a workplace (``REPO/../shared/data``) are found from it.
"""

import os

# diffusion/paths.py -> diffusion/ (PACKAGE) -> the repository: strs, for os.path, cwd= and
# PYTHONPATH.
PACKAGE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(PACKAGE)

"""Paper reproductions: ``python -m diffusion.reproduce list | NAME``.

``schema`` (the vocabulary: Metric, Budget, Baseline, Outcome), ``papers/`` (one module
per paper: its entries and experiments), ``common`` and ``generic`` (what the papers'
experiments share), ``plots`` (drawing), ``registry`` (name -> baseline, written out once),
``runner`` (run one at a tier's budget; the tables)."""

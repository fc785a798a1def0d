"""What a run writes and reads: the workdir, checkpoints, metric files, images.

  atomic.py          the one atomic write (temporary file + rename) every writer uses
  workdir.py         the workdir: lock, config.json, EMA-only restore, sample files
  checkpoints.py     orbax checkpoints: resume, retention, fallback past bad ones
  metric_writers.py  metrics.jsonl, TensorBoard
  images.py          sample grids as PNG
  torch_pickle.py    PyTorch checkpoints read without torch, by a restricted unpickler
"""

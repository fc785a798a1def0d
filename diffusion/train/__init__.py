"""Training: the pure step, the optimizer, the single-run loop, populations, sharding.

  step.py        TrainState and the pure ``train_step``; ``scan_steps`` for K per call
  optim.py       clipping -> Adam/AdamW/RMSProp -> learning-rate schedule
  loop.py        the loop, top to bottom: restore, call, log, save, sample, evaluate
  layout.py      what it runs over: Member (one run) and Layout (where members live)
  population.py  P runs as one program: the loop over stacked states, vmapped step
  pbt.py         population-based training's exploit on device, between two calls
  sharding.py    jax.sharding meshes and placement (the data axis; multi-host safe)
"""

"""Training: the pure step, the optimizer, the single-run loop, populations, sharding.

  step.py        TrainState and the pure ``train_step``; ``scan_steps`` for K per call
  optim.py       clipping -> Adam/AdamW/RMSProp -> learning-rate schedule
  loop.py        one run, top to bottom: restore, call, log, save, sample, evaluate
  population.py  P runs as one program: the loop over stacked states, vmapped step
  sharding.py    jax.sharding meshes and placement (the data axis; multi-host safe)
"""

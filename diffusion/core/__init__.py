"""The mathematical core: pure functions of arrays and explicit arguments.

  schedules.py   float64 numpy β schedules and σ ladders (no JAX)
  processes.py   VP and VE forward processes as JAX pytrees
  losses.py      ε-MSE (= DSM for VE), the variational bound, hybrid and kl losses
  model_fn.py    network + process -> eps_fn(x_t, t)

Nothing here reads a config: callers pass plain numbers and strings.
"""

"""Where the CPU training step's time goes: forward, forward + backward, the whole step,
and the step's parts one by one.

  python benchmarks/step_parts.py [--batch_size=8] [--repeats=3] [--dtype=float32]
  DIFFUSION_CPU_CONVOLUTIONS=ynnpack python benchmarks/step_parts.py   # the other kernel

The DDPM CIFAR-10 U-Net of ``benchmarks/torch_side_by_side.py`` (the same two sides,
built by that script's classes). First table: the network's forward pass in training
mode (dropout on), the gradient of a mean-square loss of its output (forward +
backward), and the whole train step (batch drawing, backward, clipping, Adam, EMA).

Second table, the parts: every layer call of one forward pass is recorded (Flax's
method interceptor on the JAX side, forward hooks on the PyTorch side), and each
distinct (layer, input shape) is timed on its own, forward + backward (the gradients
with respect to its input and its parameters, as in training), times the number of its
calls: the 3x3 convolutions (stride 1 and the stride-2 downsampling), the 1x1 / dense
projections outside attention (time embedding, the ResBlocks' channel-changing
shortcut: a Dense in JAX, a 1x1 Conv2d in diffusers), GroupNorm outside attention, the
attention blocks whole (their own GroupNorm and projections included); then clipping +
Adam + EMA on the 35.7M parameters with given gradients. "the rest" is forward +
backward minus those parts: the elementwise tail (swish, residual adds, dropout,
up-sampling, concatenation, the loss) and whatever fusion across layers saves or costs.
Median ms of ``--repeats`` calls after one warm-up call (compilation excluded). The
PyTorch rows are added when torch and diffusers are installed.
"""

import argparse
import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_side_by_side as side  # noqa: E402  (sets up the repository path)

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from configs.ddpm import cifar10  # noqa: E402
from diffusion import xla_cpu  # noqa: E402
from diffusion.models import layers  # noqa: E402
from diffusion.train import optim  # noqa: E402

PARTS = ("3x3 convolutions", "1x1 / dense projections", "GroupNorm", "attention blocks")


def median_ms(fn, repeats: int) -> float:
  fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return 1000 * sorted(times)[len(times) // 2]


# ---- JAX --------------------------------------------------------------------------------


def jax_part(module) -> str:
  """The part a Flax layer belongs to, or "" (a container: ResBlock, the U-Net)."""
  if isinstance(module, nn.Conv):
    return "3x3 convolutions" if tuple(module.kernel_size) == (3, 3) else "1x1 / dense projections"
  if isinstance(module, nn.Dense):
    return "1x1 / dense projections"
  if isinstance(module, layers.Normalize):
    return "GroupNorm"
  if isinstance(module, layers.AttnBlock):
    return "attention blocks"
  return ""


def jax_layer_calls(module, params, x, t, key):
  """[(part, layer (unbound clone), its params, input ShapeDtypeStruct)] of one forward
  pass; layers inside an attention block count as that block."""
  calls, inside = [], []

  def record(next_fun, args, kwargs, context):
    part = jax_part(context.module) if context.method_name == "__call__" else ""
    if not part or inside:
      return next_fun(*args, **kwargs)
    sub = params
    for name in context.module.scope.path:
      sub = sub[name]
    calls.append((part, context.module.clone(parent=None), sub,
                  jax.ShapeDtypeStruct(args[0].shape, args[0].dtype)))
    if part != "attention blocks":
      return next_fun(*args, **kwargs)
    inside.append(context.module)
    try:
      return next_fun(*args, **kwargs)
    finally:
      inside.pop()

  with nn.intercept_methods(record):
    jax.eval_shape(lambda p: module.apply({"params": p}, x, t, train=True,
                                          rngs={"dropout": key}), params)
  return calls


def jax_parts(js, batch_size: int, repeats: int):
  """({part: ms}, whole-network rows) for the JAX side, before its step runs."""
  module, params = js.family.module, js.state.params
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((batch_size, 32, 32, 3), np.float32))
  t = jnp.arange(batch_size, dtype=jnp.float32) * 100
  key = jax.random.PRNGKey(0)

  def forward(p, x, t):
    return module.apply({"params": p}, x, t, train=True, rngs={"dropout": key})

  fwd = jax.jit(forward)
  grad = jax.jit(jax.grad(lambda p, x, t: jnp.mean(forward(p, x, t) ** 2)))
  whole = [median_ms(lambda: jax.block_until_ready(fwd(params, x, t)), repeats),
           median_ms(lambda: jax.block_until_ready(grad(params, x, t)), repeats)]

  groups = collections.defaultdict(list)
  for part, layer, sub, spec in jax_layer_calls(module, params, x, t, key):
    groups[(part, repr(layer), spec.shape, str(spec.dtype))].append((layer, sub, spec))
  parts = collections.Counter()
  for (part, *_), members in groups.items():
    layer, sub, spec = members[0]
    inp = jnp.asarray(rng.standard_normal(spec.shape), spec.dtype)
    out = jax.eval_shape(lambda p, v, layer=layer: layer.apply({"params": p}, v), sub, inp)
    cot = jnp.ones(out.shape, out.dtype)
    both = jax.jit(jax.grad(lambda p, v, layer=layer, cot=cot: jnp.sum(
        layer.apply({"params": p}, v).astype(jnp.float32) * cot), argnums=(0, 1)))
    parts[part] += len(members) * median_ms(
        lambda both=both, sub=sub, inp=inp: jax.block_until_ready(both(sub, inp)), repeats)

  optimizer = optim.make_optimizer(cifar10.get_config().optim)
  grads = jax.tree.map(lambda p: jnp.asarray(0.01 * rng.standard_normal(p.shape), p.dtype),
                       params)

  @jax.jit
  def update(params, ema, opt_state, grads):
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    ema = jax.tree.map(lambda e, p: 0.9999 * e + (1 - 0.9999) * p, ema, params)
    return params, ema, opt_state

  state = js.state
  parts["clipping + Adam + EMA"] = median_ms(lambda: jax.block_until_ready(update(
      state.params, state.ema_params, state.opt_state, grads)), repeats)
  return parts, whole


# ---- PyTorch ----------------------------------------------------------------------------


def torch_part(torch, attention_type, module) -> str:
  if isinstance(module, torch.nn.Conv2d):
    return "3x3 convolutions" if module.kernel_size == (3, 3) else "1x1 / dense projections"
  if isinstance(module, torch.nn.Linear):
    return "1x1 / dense projections"
  if isinstance(module, torch.nn.GroupNorm):
    return "GroupNorm"
  if isinstance(module, attention_type):
    return "attention blocks"
  return ""


def torch_parts(torch, diffusers, batch_size: int, images, schedule, repeats: int):
  from diffusers.models.attention_processor import Attention  # pylint: disable=import-outside-toplevel
  ts = side.TorchSide(torch, diffusers, batch_size, images, schedule, 0.9999)
  x = torch.randn(batch_size, 3, 32, 32)
  t = torch.arange(batch_size) * 100

  def forward_backward():
    ts.opt.zero_grad(set_to_none=True)
    (ts.model(x, t).sample ** 2).mean().backward()

  whole = [median_ms(lambda: ts.model(x, t).sample, repeats),
           median_ms(forward_backward, repeats)]

  calls, inside, hooks = [], [], []

  def pre(module, args, kwargs):
    part = torch_part(torch, Attention, module)
    if part and not inside:
      calls.append((part, module, [a.detach() for a in args], dict(kwargs)))
    if part == "attention blocks":
      inside.append(module)

  def post(module, args, kwargs, output):
    del args, kwargs, output
    if inside and inside[-1] is module:
      inside.pop()

  for m in ts.model.modules():
    if torch_part(torch, Attention, m):
      hooks += [m.register_forward_pre_hook(pre, with_kwargs=True),
                m.register_forward_hook(post, with_kwargs=True)]
  with torch.no_grad():
    ts.model(x, t)
  for h in hooks:
    h.remove()

  groups = collections.defaultdict(list)
  for part, module, args, kwargs in calls:
    groups[(part, id(module) if part == "attention blocks" else repr(module),
            tuple(tuple(a.shape) for a in args))].append((module, args, kwargs))
  parts = collections.Counter()
  for (part, *_), members in groups.items():
    module, args, kwargs = members[0]
    inputs = [a.clone().requires_grad_(True) for a in args]

    def both(module=module, inputs=inputs, kwargs=kwargs):
      module.zero_grad(set_to_none=True)
      out = module(*inputs, **kwargs)
      out.backward(torch.ones_like(out))

    parts[part] += len(members) * median_ms(both, repeats)

  for p in ts.params:
    p.grad = 0.01 * torch.randn_like(p)

  def update():
    torch.nn.utils.clip_grad_norm_(ts.params, 1.0)
    ts.opt.step()
    with torch.no_grad():
      torch._foreach_lerp_(ts.ema, ts.params, 1.0 - 0.9999)

  parts["clipping + Adam + EMA"] = median_ms(update, repeats)
  return parts, whole, ts


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch_size", type=int, default=8)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  args = p.parse_args(argv)
  kernel = xla_cpu.configure()
  images = np.random.default_rng(0).integers(0, 256, (256, 32, 32, 3), np.uint8)
  js = side.JaxSide(args.batch_size, images, args.dtype)
  jparts, jwhole = jax_parts(js, args.batch_size, args.repeats)
  js.warm_up()   # after: the step donates (deletes) the state's arrays, params included
  jwhole.append(median_ms(lambda: js.run(1), args.repeats))
  sides = [(f"JAX (convolutions on {kernel or 'XLA default'})", jparts, jwhole)]
  try:
    import diffusers  # pylint: disable=import-outside-toplevel
    import torch  # pylint: disable=import-outside-toplevel
    torch.set_num_threads(os.cpu_count())
    if args.dtype == "bfloat16":
      print("(the PyTorch parts run in float32: --dtype applies to the JAX side only here)")
    tparts, twhole, ts = torch_parts(torch, diffusers, args.batch_size, images, js.schedule(),
                                     args.repeats)
    twhole.append(median_ms(lambda: ts.run(1), args.repeats))
    sides.append((f"PyTorch {torch.__version__} + diffusers {diffusers.__version__}", tparts,
                  twhole))
  except ImportError:
    print("(PyTorch / diffusers not installed: JAX rows only)")
  print(f"\nDDPM CIFAR-10 U-Net, batch {args.batch_size}, {args.dtype} (JAX), {os.cpu_count()} "
        f"cores; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; load average "
        f"{os.getloadavg()[0]:.2f}\n")
  print("| implementation | forward ms | forward + backward ms | whole step ms |")
  print("|---|---:|---:|---:|")
  for name, _, (f, fb, step) in sides:
    print(f"| {name} | {f:.0f} | {fb:.0f} | {step:.0f} |")
  print("\n| part (forward + backward, summed over its calls) | "
        + " | ".join(f"{name} ms" for name, _, _ in sides)
        + (" | JAX / PyTorch |" if len(sides) == 2 else " |"))
  print("|---|" + "---:|" * (len(sides) + (len(sides) == 2)))
  rows = list(PARTS) + ["the rest (forward + backward minus the parts above)",
                        "clipping + Adam + EMA"]
  for row in rows:
    vals = []
    for _, parts, whole in sides:
      vals.append(whole[1] - sum(parts[k] for k in PARTS) if row.startswith("the rest")
                  else parts[row])
    ratio = f" | {vals[0] / vals[1]:.2f}" if len(vals) == 2 and vals[1] else ""
    print(f"| {row} | " + " | ".join(f"{v:.0f}" for v in vals) + ratio + " |")


if __name__ == "__main__":
  main()

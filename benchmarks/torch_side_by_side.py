"""One DDPM CIFAR-10 training step, this project's JAX U-Net vs PyTorch + diffusers.

  python benchmarks/torch_side_by_side.py [--batch_size=8] [--steps=5] [--repeats=3]
      [--dtype=float32|bfloat16]

Both sides run in this one process, on the CPU, at the same batch size, in float32 or
with bfloat16 compute (``--dtype=bfloat16``: the JAX U-Net's ``model.dtype=bfloat16``,
parameters and optimizer in float32; PyTorch's matching peer, CPU autocast to bfloat16
around the forward pass and the loss's operands, parameters in float32):

* JAX: this project's U-Net of ``configs/ddpm/cifar10.py`` (35,746,307 parameters)
  and its own jitted ``train_step``: a batch drawn from random uint8 images held
  on the device (flip, scale to [-1, 1]), t ~ U{0..999}, q_sample, eps-MSE,
  forward + backward, global-norm clipping at 1, Adam, the EMA update.
* PyTorch: diffusers' ``UNet2DModel`` configured to the same architecture, and the
  same work written out in eager PyTorch: the same batch drawing, q_sample with the
  project's own schedule, eps-MSE, backward, ``clip_grad_norm_(1.0)``, Adam, and an
  EMA of the parameters.

One warm-up step per side (JAX: compilation and the first call; PyTorch: the
first call, which builds oneDNN primitives) is excluded. Then, in each of
``--repeats`` rounds, each side runs ``--steps`` timed steps; the order of the
two alternates between rounds so slow spells of the machine hit both. Printed:
a Markdown table of the median ms/step of each side (and every round's value)
and the ratio JAX / PyTorch (below 1: JAX is faster).

PyTorch and diffusers are not project requirements; without them only the JAX
side is timed, after a line saying how to install them.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import functools  # noqa: E402

import flax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from configs.ddpm import cifar10  # noqa: E402
from diffusion import families, xla_cpu  # noqa: E402
from diffusion.train import optim
from diffusion.train import sharding
from diffusion.data import preprocess  # noqa: E402
from diffusion.reproduce.runner import cpu_name  # noqa: E402
from diffusion.train.step import create_train_state, scan_steps, train_step  # noqa: E402

# The versions this benchmark was checked with (for the install hint).
TORCH_VERSION = "2.13.0"
DIFFUSERS_VERSION = "0.42.1"
NUM_IMAGES = 2048   # size of the synthetic uint8 "dataset" both sides draw from


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch_size", type=int, default=8, help="Batch size of both sides.")
  p.add_argument("--steps", type=int, default=5, help="Timed steps per side per round.")
  p.add_argument("--repeats", type=int, default=3, help="Rounds; the median is reported.")
  p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                 help="Compute dtype of both sides (parameters stay float32).")
  return p.parse_args(argv)


class JaxSide:
  """The project's own train step on the DDPM CIFAR-10 config."""

  name = "JAX / Flax (this project)"

  def __init__(self, batch_size: int, images_nhwc: np.ndarray, dtype: str = "float32"):
    config = cifar10.get_config()
    config.model.dtype = dtype
    self.family = families.make_family(config)
    optimizer = optim.make_optimizer(config.optim)
    mesh = sharding.make_mesh()
    params = self.family.init_params(jax.random.PRNGKey(0))
    self.num_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
    self.param_shapes = [tuple(p.shape) for p in jax.tree.leaves(params)]

    def get_batch(images, key):
      # Exactly what a device-resident CIFAR-10 source does: draw, flip, scale.
      k_idx, k_pre = jax.random.split(key)
      idx = jax.random.randint(k_idx, (batch_size,), 0, images.shape[0])
      return preprocess(jnp.take(images, idx, axis=0), k_pre, centered=True,
                        uniform_dequantization=False, random_flip=True)

    step = functools.partial(train_step, loss_fn=self.family.loss_fn, optimizer=optimizer,
                             get_batch=get_batch,
                             batch_sharding=NamedSharding(mesh, P(sharding.DATA_AXIS)))
    # One step per call, so a call is comparable to one eager PyTorch step.
    self.step_fn = jax.jit(scan_steps(step, 1, data_per_step=False), donate_argnums=(0,))
    self.data = sharding.replicate(images_nhwc, mesh)
    self.state = sharding.replicate(
        create_train_state(params, optimizer, seed=0, ema_decay=config.training.ema_decay,
                           loss_hparams=self.family.loss_hparams()), mesh)

  def schedule(self):
    """(sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)) for t = 0..T-1, as numpy float32."""
    t = jnp.arange(self.family.process.num_timesteps)
    return (np.array(self.family.process.signal_scale(t), np.float32),   # writable copies
            np.array(self.family.process.noise_std(t), np.float32))

  def warm_up(self) -> float:
    t0 = time.perf_counter()
    self.step_fn = self.step_fn.lower(self.state, self.data).compile()
    self.run(1)
    return time.perf_counter() - t0

  def run(self, steps: int) -> None:
    for _ in range(steps):
      self.state, metrics = self.step_fn(self.state, self.data)
    # Dispatch is asynchronous: the steps are done only when the last loss is.
    jax.block_until_ready(metrics["loss"])


class TorchSide:
  """diffusers' UNet2DModel as the DDPM CIFAR-10 U-Net, trained by an eager step."""

  name = "PyTorch + diffusers UNet2DModel"

  def __init__(self, torch, diffusers, batch_size: int, images_nhwc: np.ndarray,
               schedule, ema_decay: float, dtype: str = "float32"):
    self.torch = torch
    self.autocast = dtype == "bfloat16"
    torch.manual_seed(0)
    self.gen = torch.Generator().manual_seed(0)
    self.model = diffusers.UNet2DModel(
        sample_size=32, in_channels=3, out_channels=3,
        block_out_channels=(128, 256, 256, 256), layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        # None: one head as wide as the block (DDPM's single-head attention).
        attention_head_dim=None,
        norm_num_groups=32, norm_eps=1e-6,   # DDPM's GroupNorm(32, eps 1e-6)
        dropout=0.1, act_fn="silu", resnet_time_scale_shift="default",
        # DDPM's sinusoid: [sin, cos], frequencies exp(-ln(1e4) i / (half - 1)).
        time_embedding_type="positional", flip_sin_to_cos=False, freq_shift=1,
        mid_block_type="UNetMidBlock2D", add_attention=True,
        downsample_type="conv", upsample_type="conv",
    ).float().train()   # train(): dropout on, as in the JAX step
    self.params = [p for p in self.model.parameters() if p.requires_grad]
    self.num_params = sum(p.numel() for p in self.params)
    self.param_shapes = [tuple(p.shape) for p in self.params]
    with torch.no_grad():
      self.ema = [p.detach().clone() for p in self.params]
    # fused=True is the single-kernel CPU Adam (torch >= 2.4), the closest
    # counterpart of XLA fusing optax's Adam into the step; else the foreach one.
    try:
      self.opt = torch.optim.Adam(self.params, lr=2e-4, betas=(0.9, 0.999), eps=1e-8,
                                  fused=True)
    except (RuntimeError, TypeError, ValueError):
      self.opt = torch.optim.Adam(self.params, lr=2e-4, betas=(0.9, 0.999), eps=1e-8,
                                  foreach=True)
    self.images = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))
    self.signal = torch.from_numpy(schedule[0])
    self.noise_std = torch.from_numpy(schedule[1])
    self.batch_size = batch_size
    self.ema_decay = ema_decay
    self.step = 0

  def train_step(self):
    torch, b = self.torch, self.batch_size
    # The same batch drawing as the JAX side: random images, random flips, [-1, 1].
    idx = torch.randint(0, self.images.shape[0], (b,), generator=self.gen)
    x0 = self.images[idx].float() / 255.0 * 2.0 - 1.0
    flip = torch.rand(b, generator=self.gen) < 0.5
    x0 = torch.where(flip[:, None, None, None], x0.flip(3), x0)
    t = torch.randint(0, self.signal.shape[0], (b,), generator=self.gen)
    noise = torch.randn(x0.shape, generator=self.gen)
    x_t = self.signal[t][:, None, None, None] * x0 + self.noise_std[t][:, None, None, None] * noise
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
      eps = self.model(x_t, t).sample
    loss = torch.mean((eps.float() - noise) ** 2)
    self.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(self.params, 1.0)
    self.opt.step()
    with torch.no_grad():
      # As the project's EMA: a copy at step 0, then ema += (1 - decay)(p - ema).
      weight = 1.0 if self.step == 0 else 1.0 - self.ema_decay
      torch._foreach_lerp_(self.ema, self.params, weight)
    self.step += 1
    return loss

  def warm_up(self) -> float:
    t0 = time.perf_counter()
    self.run(1)
    return time.perf_counter() - t0

  def run(self, steps: int) -> None:
    for _ in range(steps):
      loss = self.train_step()
    loss.item()   # eager CPU ops are synchronous already; this just uses the result


def same_shapes(a, b) -> bool:
  """Whether two parameter lists hold the same tensors up to layout (HWIO vs OIHW,
  a Dense [in, out] vs a 1x1 Conv [out, in, 1, 1])."""
  key = lambda s: tuple(sorted(d for d in s if d != 1))  # noqa: E731
  return sorted(map(key, a)) == sorted(map(key, b))


def main(argv=None):
  args = parse_args(argv)
  kernel = xla_cpu.configure()  # before the first computation (diffusion/xla_cpu.py)
  try:
    import diffusers
    import torch
  except ImportError as e:
    torch = diffusers = None
    # Their own venv: the CPU wheel comes from PyTorch's index, which lacks diffusers.
    print(f"PyTorch side skipped ({e}); to time it: python -m venv /tmp/torchvenv && "
          f"/tmp/torchvenv/bin/pip install torch=={TORCH_VERSION} --index-url "
          f"https://download.pytorch.org/whl/cpu && /tmp/torchvenv/bin/pip install "
          f"diffusers=={DIFFUSERS_VERSION} -r requirements.txt && /tmp/torchvenv/bin/pip "
          f"install -e . --no-deps && /tmp/torchvenv/bin/python {' '.join(sys.argv)}")
  if torch is not None:
    # Every core for PyTorch's intra-op pool; XLA's CPU client uses all cores too.
    torch.set_num_threads(os.cpu_count())

  images = np.random.default_rng(0).integers(0, 256, (NUM_IMAGES, 32, 32, 3), np.uint8)
  sides = [JaxSide(args.batch_size, images, args.dtype)]
  if torch is not None:
    sides.append(TorchSide(torch, diffusers, args.batch_size, images, sides[0].schedule(),
                           cifar10.get_config().training.ema_decay, args.dtype))

  print(f"CPU: {cpu_name()} ({os.cpu_count()} logical cores); jax {jax.__version__} "
        f"({jax.devices()[0].platform}, convolutions on {kernel or 'XLA default'} "
        f"(diffusion.xla_cpu)), flax {flax.__version__}"
        + (f", torch {torch.__version__} ({torch.get_num_threads()} threads), "
           f"diffusers {diffusers.__version__}" if torch is not None else ""))
  for s in sides:
    print(f"{s.name}: {s.num_params:,} parameters")
  if len(sides) == 2:
    jx, pt = sides
    diff = pt.num_params - jx.num_params
    print(f"parameter counts: {'equal' if diff == 0 else f'PyTorch {diff:+,}'}; tensor "
          f"shapes match one to one up to layout: "
          f"{'yes' if same_shapes(jx.param_shapes, pt.param_shapes) else 'no'}")
  print(f"batch {args.batch_size}, {args.dtype} compute, {args.steps} timed steps x "
        f"{args.repeats} rounds per side; load average before: {os.getloadavg()[0]:.2f}")

  warm = [s.warm_up() for s in sides]
  times = [[] for _ in sides]
  for r in range(args.repeats):
    # Alternate which side goes first, so neither always follows the other's
    # thread pools winding down or always meets the same phase of machine noise.
    order = range(len(sides)) if r % 2 == 0 else reversed(range(len(sides)))
    for i in order:
      t0 = time.perf_counter()
      sides[i].run(args.steps)
      times[i].append((time.perf_counter() - t0) / args.steps * 1e3)

  print()
  print("| implementation | parameters | warm-up s | ms/step (median) | img/s "
        "| ms/step per round |")
  print("|---|---:|---:|---:|---:|---|")
  medians = []
  for s, w, ts in zip(sides, warm, times):
    med = statistics.median(ts)
    medians.append(med)
    print(f"| {s.name} | {s.num_params:,} | {w:.1f} | {med:.1f} | "
          f"{args.batch_size / med * 1e3:.2f} | {', '.join(f'{t:.1f}' for t in ts)} |")
  print()
  print(f"load average after: {os.getloadavg()[0]:.2f} (1 min)")
  if len(medians) == 2:
    print(f"JAX / PyTorch (median ms/step): {medians[0] / medians[1]:.3f}; per round: "
          + ", ".join(f"{a / b:.3f}" for a, b in zip(*times)))
  else:
    print("JAX / PyTorch: n/a (PyTorch side not run)")


if __name__ == "__main__":
  main()

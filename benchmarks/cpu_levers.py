"""XLA:CPU levers for the training step: one subprocess per setting, one table.

  python benchmarks/cpu_levers.py [--config=configs/ddpm/cifar10.py] [--batch_size=8]
      [--steps=3] [--levers=default,eigen_conv,...]

Each lever is a set of XLA flags (read once, when the CPU backend starts, hence one
process each) under which ``benchmarks/train_throughput.py`` times the same train step
(forward, backward, clipping, Adam, EMA; compilation excluded). The default setting
runs first and again last, so drift of the machine during the study shows as the
difference of those two rows. Printed: a Markdown table of ms/step per lever and its
ratio to the first default row.

What the levers are (jax 0.10.2's XLA:CPU):

* ``default``: XLA's own choice (``DIFFUSION_EIGEN_CONVOLUTIONS=0``, so without the
  project's setting of ``diffusion/xla_cpu.py``, which is ``eigen_conv``). Convolutions are already offloaded to YNNPACK
  (``__ynn_fusion`` custom fusions in the optimized HLO); everything else is XLA's
  own loop fusions.
* ``eigen_conv``: the convolutions back on XLA's Eigen kernels
  (``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution``).
* ``ynn_eltwise``: elementwise and reduction fusions handed to YNNPACK as well.
* ``xnn_graph``: XNNPACK's greedy subgraph extraction.
* ``onednn``: oneDNN (the library PyTorch's CPU convolutions use) for dots and
  elementwise fusions.
* ``two_devices``: one host device per core, the batch sharded across them (the
  data-parallel path of ``diffusion.train.sharding``, gradients all-reduced).
* ``two_devices_eigen_conv``: both of the above.
* ``single_thread_eigen``: Eigen's intra-op thread pool off (a check that the
  default uses both cores).
* ``fast_math``: LLVM fast math (changes results; a bound on what reassociation
  and approximate transcendental functions could give, not a candidate default).
"""

import argparse
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LEVERS = {
    "default": "",
    "eigen_conv": "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",
    "ynn_eltwise": "--xla_cpu_experimental_ynn_fusion_type=+eltwise,+reduce",
    "xnn_graph": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "onednn": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_fusion_type=dot,eltwise",
    "two_devices": "--xla_force_host_platform_device_count=2",
    "two_devices_eigen_conv": "--xla_force_host_platform_device_count=2 "
                              "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",
    "single_thread_eigen": "--xla_cpu_multi_thread_eigen=false",
    "fast_math": "--xla_cpu_enable_fast_math=true",
}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", default="configs/ddpm/cifar10.py")
  p.add_argument("--batch_size", type=int, default=8)
  p.add_argument("--steps", type=int, default=3, help="Timed steps per lever.")
  p.add_argument("--levers", default=",".join(LEVERS),
                 help=f"Comma-separated subset of {sorted(LEVERS)}.")
  return p.parse_args(argv)


def time_lever(flags: str, args) -> tuple:
  """(compile s, ms/step) of train_throughput.py under ``flags``; (nan, nan) on failure."""
  env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + flags).strip(),
             DIFFUSION_COMPILE_CACHE="0", JAX_PLATFORMS="cpu",
             DIFFUSION_EIGEN_CONVOLUTIONS="0")   # the levers exactly, not the project's choice
  cmd = [sys.executable, os.path.join(REPO, "benchmarks", "train_throughput.py"),
         f"--config={args.config}", f"--batch_sizes={args.batch_size}", f"--steps={args.steps}"]
  out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
  for line in out.stdout.splitlines():
    parts = line.split()
    if len(parts) >= 3 and parts[0] == str(args.batch_size):
      return float(parts[1]), float(parts[2])
  sys.stderr.write(f"{flags or 'default'} failed:\n{out.stderr[-2000:]}\n")
  return float("nan"), float("nan")


def main(argv=None):
  args = parse_args(argv)
  names = [n.strip() for n in args.levers.split(",") if n.strip()]
  unknown = [n for n in names if n not in LEVERS]
  if unknown:
    sys.exit(f"--levers: unknown {unknown}; choose from {sorted(LEVERS)}")
  order = ["default"] + [n for n in names if n != "default"] + ["default"]
  rows = []
  for name in order:
    compile_s, ms = time_lever(LEVERS[name], args)
    rows.append((name, compile_s, ms))
    print(f"  {name}: {ms:.0f} ms/step", file=sys.stderr, flush=True)
  base = rows[0][2]
  print(f"\n{args.config}, batch {args.batch_size}, {args.steps} timed steps per lever\n")
  print("| lever | XLA flags | compile + 1st call (s) | ms/step | vs default |")
  print("|---|---|---:|---:|---:|")
  for name, compile_s, ms in rows:
    print(f"| {name} | `{LEVERS[name] or '(none)'}` | {compile_s:.1f} | {ms:.0f} | "
          f"{ms / base:.2f} |")


if __name__ == "__main__":
  main()

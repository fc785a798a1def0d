"""XLA:CPU levers for the training step: one subprocess per setting, one table.

  python benchmarks/cpu_levers.py [--config=configs/ddpm/cifar10.py] [--batch_size=8]
      [--steps=3] [--rounds=2] [--levers=eigen_conv,...]

Each lever is a set of XLA flags (read once, when the CPU backend starts, hence one
process each) under which ``benchmarks/train_throughput.py`` times the same train step
(forward, backward, clipping, Adam, EMA; compilation excluded). Every round runs XLA's
default and each lever once, the order alternating between rounds; a lever's ratio to
the default is taken within each round (a pair close in time) and the table gives the
median of those ratios, the median ms/step and every round's ms/step.

What the levers are (jax 0.10.2's XLA:CPU):

* ``default``: XLA's own choice (``DIFFUSION_CPU_CONVOLUTIONS=ynnpack``, so without the
  project's measured choice of ``diffusion/xla_cpu.py``). Convolutions are already offloaded to YNNPACK
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
* ``vector_width_512``: XLA's own loops (the elementwise and reduction fusions) vectorised
  for 512-bit registers (AVX-512; LLVM's default preference is 256 bits).
* ``eigen_conv_vector_width_512``: that with the convolutions on Eigen.
* ``onednn_custom_call``: oneDNN custom calls for convolutions and matmuls (this jaxlib
  is built without them: the compiled program is unchanged, a check).
* ``no_concurrency_scheduler``: XLA:CPU's concurrency-optimized scheduler off.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

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
    "vector_width_512": "--xla_cpu_prefer_vector_width=512",
    "eigen_conv_vector_width_512": "--xla_cpu_prefer_vector_width=512 "
                                   "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",
    "onednn_custom_call": "--xla_cpu_experimental_onednn_custom_call=true",
    "no_concurrency_scheduler": "--xla_cpu_enable_concurrency_optimized_scheduler=false",
}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", default="configs/ddpm/cifar10.py")
  p.add_argument("--batch_size", type=int, default=8)
  p.add_argument("--steps", type=int, default=3, help="Timed steps per lever and round.")
  p.add_argument("--rounds", type=int, default=2, help="Rounds over all levers, in "
                 "alternating order; the table gives medians.")
  p.add_argument("--levers", default=",".join(LEVERS),
                 help=f"Comma-separated subset of {sorted(LEVERS)}.")
  return p.parse_args(argv)


def time_lever(flags: str, args, cache_dir: str) -> tuple:
  """(compile s, ms/step) of train_throughput.py under ``flags``; (nan, nan) on failure.
  Compiled programs go to ``cache_dir`` (JAX's persistent cache, keyed by the flags too),
  so a lever's later rounds skip its compilation."""
  env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + flags).strip(),
             DIFFUSION_COMPILE_CACHE="0", JAX_PLATFORMS="cpu",
             JAX_COMPILATION_CACHE_DIR=cache_dir, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             DIFFUSION_CPU_CONVOLUTIONS="ynnpack")   # the levers exactly, not the measured choice
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
  names = ["default"] + [n for n in names if n != "default"]
  compile_s, times, ratios = {}, {n: [] for n in names}, {n: [] for n in names}
  with tempfile.TemporaryDirectory() as cache_dir:
    for r in range(args.rounds):
      # Alternate the order so that no lever always follows the same one or meets the same
      # phase of the machine's load; the default runs in every round (the pair's baseline).
      this_round = {}
      for name in (names if r % 2 == 0 else names[::-1]):
        c, ms = time_lever(LEVERS[name], args, cache_dir)
        compile_s.setdefault(name, c)
        this_round[name] = ms
        times[name].append(ms)
        print(f"  round {r + 1}, {name}: {ms:.0f} ms/step (load {os.getloadavg()[0]:.1f})",
              file=sys.stderr, flush=True)
      for name in names:
        ratios[name].append(this_round[name] / this_round["default"])
  print(f"\n{args.config}, batch {args.batch_size}, {args.steps} timed steps per lever and "
        f"round, {args.rounds} rounds; load average at the end {os.getloadavg()[0]:.2f}\n")
  print("| lever | XLA flags | compile + 1st call (s) | ms/step (median) | vs default "
        "(median of the rounds' ratios) | ms/step per round |")
  print("|---|---|---:|---:|---:|---|")
  for name in names:
    print(f"| {name} | `{LEVERS[name] or '(none)'}` | {compile_s[name]:.1f} | "
          f"{statistics.median(times[name]):.0f} | {statistics.median(ratios[name]):.2f} | "
          + ", ".join(f"{t:.0f}" for t in times[name]) + " |")


if __name__ == "__main__":
  main()

#!/usr/bin/env bash
# The CPU figures of BENCHMARKS.md's "CPU kernels per machine" section in one run (issue 32):
#   PYTHON=/tmp/torchvenv/bin/python bash benchmarks/cpu_study.sh [quick]
# PYTHON: an interpreter with this project's requirements plus torch 2.13.0 and diffusers
# 0.42.1 (torch_side_by_side.py prints how to make one). On a quiet 2-core machine the whole
# study takes about 40 minutes; `quick` runs only the kernel choice and the two float32
# side-by-side rows (about 12 minutes). Each table is printed with the load average beside
# it: rerun a comparison whose result is close.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
export JAX_PLATFORMS=cpu
echo "# $(date -u +%F) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) ($(nproc) cores)"
grep -m1 -o -w -E 'avx512f|avx512_bf16|amx_bf16|avx2' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
"$PY" -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__)"

# 1. The automatic choice, measured afresh in a throw-away cache folder.
DIFFUSION_CACHE_DIR="$(mktemp -d)" "$PY" -c "
import time; t = time.perf_counter()
from diffusion import xla_cpu
print('choice:', xla_cpu.configure(), f'({time.perf_counter() - t:.1f} s with the imports)')"

# 2. The goal row and the kernel check: JAX / PyTorch per kernel (the ratio is paired per
#    round, so the two kernels compare through PyTorch as the yardstick).
for kernel in eigen ynnpack; do
  echo "## side by side, float32, convolutions on $kernel; $(uptime)"
  DIFFUSION_CPU_CONVOLUTIONS=$kernel "$PY" benchmarks/torch_side_by_side.py \
      --batch_size 8 --steps 3 --repeats 3
done
[ "${1:-}" = quick ] && exit 0

# 3. bfloat16 against PyTorch's CPU autocast.
for kernel in eigen ynnpack; do
  echo "## side by side, bfloat16, convolutions on $kernel; $(uptime)"
  DIFFUSION_CPU_CONVOLUTIONS=$kernel "$PY" benchmarks/torch_side_by_side.py \
      --batch_size 8 --steps 3 --repeats 3 --dtype bfloat16
done

# 4. Where the time goes, part by part, and the convolutions by shape and direction.
for kernel in eigen ynnpack; do
  echo "## parts, convolutions on $kernel; $(uptime)"
  DIFFUSION_CPU_CONVOLUTIONS=$kernel "$PY" benchmarks/step_parts.py --repeats 3
  DIFFUSION_CPU_CONVOLUTIONS=$kernel "$PY" benchmarks/conv_kernels.py --repeats 5
done

# 5. The XLA flags, one process each (XLA's default first and last).
echo "## levers; $(uptime)"
"$PY" benchmarks/cpu_levers.py --steps=3 --levers=eigen_conv,vector_width_512,\
eigen_conv_vector_width_512,two_devices,ynn_eltwise,xnn_graph,onednn,onednn_custom_call,\
no_concurrency_scheduler,single_thread_eigen,fast_math

# 6. steps_per_call > 1 on the CPU (scan_steps writes a convolutional step out).
echo "## loop bodies; $(uptime)"
"$PY" benchmarks/loop_bodies.py --configs=configs/ddpm/quickstart.py,configs/ddpm/toy_mixture.py \
    --populations=

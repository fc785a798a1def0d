#!/usr/bin/env bash
# The GPU figures of BENCHMARKS.md in one run of a few minutes (issue 14, part 4):
#   bash benchmarks/gpu.sh [PEAK_BF16_TFLOPS]      # e.g. 989 for an H100 SXM, 1979 sparse: no
# Training img/s of the DDPM CIFAR-10 U-Net at batch 128 and 256 in float32 and bfloat16
# (FLOPs per image and memory from XLA's analysis, the fraction of the dense peak), then
# DDIM-50 and ancestral-1000 sampling throughput with the projected time for 50,000 samples.
# Anchor: the DDPM paper trained at 21 steps/s x 128 = 2,690 img/s on a TPU v3-8.
set -euo pipefail
cd "$(dirname "$0")/.."
PEAK="${1:-989}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python -c "import jax; print(jax.__version__, jax.devices())"
for dtype in float32 bfloat16; do
  python benchmarks/train_throughput.py --config=configs/ddpm/cifar10.py \
      --batch_sizes=128,256 --steps=10 --dtype="$dtype" --peak_tflops="$PEAK"
done
for dtype in float32 bfloat16; do
  python benchmarks/sampling_throughput.py --batch_size 256 --measure_steps 20 --repeats 3 \
      --dtype "$dtype"
done

"""Batches/s of the device-resident data path vs a host tf.data pipeline.

CIFAR-10-shaped uint8 data (random 50,000×32×32×3 by default, or the shared
``cifar10_sample``), batch 128, scaled to [-1, 1] with a random flip, without
(DDPM) and with (NCSN/DPM) uniform dequantization (x + U)/256. Three paths:

* device: ``source.get_batch`` jitted, data held on the device as uint8; one
  call per batch (inside training it is fused into the train step).
* numpy stream: ``source.iterator`` (host gather by epoch permutation) ->
  ``jax.device_put`` -> jitted ``source.preprocess``.
* tf.data: from_tensor_slices -> shuffle(10k) -> repeat -> batch -> map(flip,
  dequantize, scale) -> prefetch -> as_numpy_iterator -> ``jax.device_put``.

Every timed batch is waited for (``block_until_ready``). Usage::

  python benchmarks/data_throughput.py [--batches 200] [--data random|cifar10_sample]
"""

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from diffusion.data import files
from diffusion.data.sources import ImageSource


def make_images(kind: str, n: int) -> np.ndarray:
  if kind == "cifar10_sample":
    return files.load_cifar10_sample("train", "", 32)
  return np.random.default_rng(0).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def timed(next_batch, batches: int, warmup: int) -> float:
  """Seconds per batch after ``warmup`` untimed batches."""
  for _ in range(warmup):
    next_batch()
  start = time.perf_counter()
  for _ in range(batches):
    next_batch()
  return (time.perf_counter() - start) / batches


def bench_device(src: ImageSource, batch_size: int, batches: int, warmup: int) -> float:
  arrays = jax.device_put(src.arrays)
  get = jax.jit(src.get_batch, static_argnums=2)
  data_key = jax.random.key(0)
  step = [0]

  def next_batch():
    step[0] += 1
    get(arrays, jax.random.fold_in(data_key, step[0]), batch_size).block_until_ready()

  return timed(next_batch, batches, warmup)


def bench_numpy_stream(src: ImageSource, batch_size: int, batches: int, warmup: int) -> float:
  it = src.iterator(batch_size, seed=0)
  pre = jax.jit(src.preprocess)
  data_key = jax.random.key(0)

  def next_batch():
    step = it.next_step
    pre(jax.device_put(next(it)), jax.random.fold_in(data_key, step)).block_until_ready()

  return timed(next_batch, batches, warmup)


def bench_tf_data(images: np.ndarray, batch_size: int, batches: int, warmup: int,
                  dequantize: bool) -> float:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.random.set_seed(0)

  def augment(x):
    x = tf.cast(x, tf.float32)
    if dequantize:
      x = (x + tf.random.uniform(tf.shape(x))) / 256.0 * 2.0 - 1.0
    else:
      x = x / 127.5 - 1.0
    flip = tf.random.uniform([tf.shape(x)[0], 1, 1, 1]) < 0.5
    return tf.where(flip, tf.reverse(x, axis=[2]), x)

  ds = (tf.data.Dataset.from_tensor_slices(images).shuffle(10_000, seed=0).repeat()
        .batch(batch_size, drop_remainder=True)
        .map(augment, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))
  it = ds.as_numpy_iterator()

  def next_batch():
    jax.device_put(next(it)).block_until_ready()

  return timed(next_batch, batches, warmup)


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data", default="random", choices=("random", "cifar10_sample"))
  parser.add_argument("--num_examples", type=int, default=50_000)
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--batches", type=int, default=200)
  parser.add_argument("--warmup", type=int, default=20)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--prng_impl", default="threefry2x32",
                      choices=("threefry2x32", "rbg", "unsafe_rbg"),
                      help="JAX PRNG for the data key (dequantization noise, flips, indices)")
  args = parser.parse_args()
  jax.config.update("jax_default_prng_impl", args.prng_impl)

  images = make_images(args.data, args.num_examples)
  paths = (
      ("device-resident: jitted get_batch (uint8 on device)",
       lambda src, dq: bench_device(src, args.batch_size, args.batches, args.warmup)),
      ("host numpy stream: iterator + device_put + jitted preprocess",
       lambda src, dq: bench_numpy_stream(src, args.batch_size, args.batches, args.warmup)),
      ("host tf.data: slices/shuffle/batch/map + device_put",
       lambda src, dq: bench_tf_data(images, args.batch_size, args.batches, args.warmup, dq)),
  )
  # Repeats interleave the paths, so load from other processes hits all alike;
  # the table shows the median rate over repeats.
  rates = {}
  for _ in range(args.repeats):
    for label, fn in paths:
      for dequantize in (False, True):
        src = ImageSource(name=args.data, split="train", shape=images.shape[1:],
                          num_examples=images.shape[0], arrays={"images": images},
                          device_resident=True, centered=True,
                          uniform_dequantization=dequantize, random_flip=True)
        rates.setdefault((label, dequantize), []).append(1 / fn(src, dequantize))
  rows = [(label, float(np.median(rates[label, False])), float(np.median(rates[label, True])))
          for label, _ in paths]

  dev = jax.devices()[0]
  print(f"data: {args.data} uint8 {images.shape}, batch {args.batch_size}, "
        f"{args.batches} timed batches after {args.warmup} warm-up, median of {args.repeats} "
        "repeats; output float32 [-1, 1]")
  print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, jax {jax.__version__} on "
        f"{dev.platform} ({dev.device_kind}), PRNG {args.prng_impl}\n")
  print("| path | flip (DDPM) batches/s | flip + dequantization (NCSN/DPM) batches/s |")
  print("|---|---:|---:|")
  for label, plain, deq in rows:
    print(f"| {label} | {plain:,.0f} ({1e3 / plain:.2f} ms) | {deq:,.0f} ({1e3 / deq:.2f} ms) |")

if __name__ == "__main__":
  main()

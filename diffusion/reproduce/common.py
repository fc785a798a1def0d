"""What the papers' experiments share: the config file with a tier's overrides, training
(resuming) and restoring the EMA weights, evaluating, stopping between phases on a signal,
keeping measurements and samples so that a rerun resumes, and the words and budgets their
entries share."""

import hashlib
import json
import os
from typing import Any, Callable, Dict, Optional

import ml_collections
import numpy as np

from diffusion import evals, families, paths
from diffusion.config import files
from diffusion.io import atomic
from diffusion.io.workdir import config_json, restore_ema_params
from diffusion.train.loop import PENDING_STOP, Interrupted, train

CPU = "2 CPU cores"
GPU = "1 GPU (H100 class)"
HOLDS = (1.0, 1.0)      # the band of a claim: measured 1.0 when it holds

CLASSIFIER_PROTOCOL = ("classifier Fréchet distance: features of the project's small "
                       "classifier of the dataset (trained on its training split), samples "
                       "vs the training split, 297 samples; the floor is the test split.")

# A small digits U-Net for the CPU tier of the objective (DDPM) and DDIM experiments.
SMALL_DIGITS_UNET = {
    "model.ch": 32, "model.ch_mult": (1, 2), "model.num_res_blocks": 1,
    "model.attn_resolutions": (), "training.num_train_steps": 2000, "training.batch_size": 32,
    "training.steps_per_call": 1, "training.log_every": 500,
    "training.checkpoint_every": 1000, "training.sample_every": 0,
    "eval.bpd.num_examples": 100, "eval.bpd.batch_size": 100,
    "eval.classifier_fid.num_samples": 297,
    "sampling.num_steps": 100,
}


def load_config_file(path: str,
                     overrides: Optional[Dict[str, Any]] = None) -> ml_collections.ConfigDict:
  """A config file's get_config() (``path`` relative to the repository, e.g.
  ``configs/ddpm/digits.py``) with dotted ``overrides`` ({"model.ch": 32, ...})."""
  return files.load(os.path.join(paths.REPO, path), overrides or {}, name=path)


def with_sampling(config, **sampling) -> ml_collections.ConfigDict:
  """``config`` with ``sampling.<key>`` overrides (a protocol's sampler)."""
  return files.apply_overrides(config, {f"sampling.{k}": v for k, v in sampling.items()})


def check_stop() -> None:
  """Interrupted when a signal came (the reproduction's handler is ``loop.interrupt``),
  even one whose KeyboardInterrupt a library swallowed: checked between phases."""
  if PENDING_STOP:
    raise Interrupted(f"{PENDING_STOP[0]} received")


def train_and_restore(config, workdir: str):
  """Trains (or resumes, or finds finished) the run; returns (family, EMA params, step)."""
  check_stop()
  final = train(config, workdir, progress=False)
  if final.get("interrupted"):   # an unfinished model is no result
    raise Interrupted(f"{final['interrupted']} stopped training at step {final['step']} "
                      "(checkpoint saved)")
  family = families.make_family(config)
  params, step = restore_ema_params(workdir, family)
  return family, params, step


def evaluate(config, params, step: int, workdir: str, names, seed: int = 0) -> Dict[str, float]:
  """Runs the named evaluators of ``config`` on EMA params; merged eval/* metrics."""
  family = families.make_family(config)
  out = {}
  for evaluator in evals.make_evaluators(family, workdir, names, seed=seed):
    check_stop()
    out.update(evaluator.run(params, step))
  check_stop()
  return out


def quality(config, params, step, workdir, seed) -> Dict[str, float]:
  """The classifier metric of ``config``'s eval.classifier_fid with its sampler."""
  return evaluate(config, params, step, workdir, ["classifier_fid"], seed)


def _kept_path(directory: str, what: str, config, step: int, seed: int, suffix: str) -> str:
  """``directory/<what>_<step>_seed<seed>_<digest><suffix>``; the digest is of the resolved
  config, sampler included, so a changed protocol never reads an older file."""
  digest = hashlib.sha256(config_json(config).encode()).hexdigest()[:12]
  return os.path.join(directory, f"{what}_{step}_seed{seed}_{digest}{suffix}")


def measured_once(directory: str, what: str, config, step: int, seed: int,
                  measure: Callable[[], Dict[str, float]]) -> Dict[str, float]:
  """``measure()`` of ``config`` at ``step``, kept as ``directory/<what>_<step>_seed<seed>_
  <digest>.json`` so that a rerun after an interruption skips the evaluations already
  done. The digest is of the resolved config, sampler included: a changed protocol is
  measured afresh, never read from an older file."""
  path = _kept_path(directory, what, config, step, seed, ".json")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  row = measure()
  atomic.write_json(path, row)
  return row


def samples_once(directory: str, what: str, config, step: int, seed: int,
                 draw: Callable[[], np.ndarray]) -> np.ndarray:
  """``draw()`` (uint8 samples) kept as ``directory/<what>_<step>_seed<seed>_<digest>.npy``,
  as :func:`measured_once` keeps a measurement: a rerun scores and draws the pictures
  from the same samples without sampling again."""
  path = _kept_path(directory, what, config, step, seed, ".npy")
  if os.path.exists(path):
    return np.load(path)
  images = np.asarray(draw())
  atomic.write_with(path, lambda f: np.save(f, images), binary=True)
  return images

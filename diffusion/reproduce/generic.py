"""The two experiments that belong to no one paper, and the entries built on them:
train a config and run its evaluators (the GPU and paper tiers, the VAE), and evaluate
a released model imported with ``python -m diffusion.pretrained import`` (tier
``weights``; nothing is trained)."""

import os
from typing import Any, Dict, Optional

import jax
import numpy as np

from diffusion import evals, families
from diffusion.config import checks
from diffusion.data import make_source
from diffusion.errors import ConfigError
from diffusion.io.workdir import load_config, restore_ema_params, save_samples
from diffusion.reproduce import common
from diffusion.reproduce.schema import Baseline, Budget, Metric, Outcome
from diffusion.sweeps.grid import apply_overrides


def train_evaluate(baseline, budget, workdir: str, seed: int = 0) -> Outcome:
  """Trains the baseline's config with the tier's overrides, then runs the evaluators
  its metrics name (``eval/<metric>`` of bpd, fid, classifier_fid, elbo) and writes a
  sample grid."""
  config = common.load_config_file(baseline.config, budget.overrides)
  family, params, step = common.train_and_restore(config, os.path.join(workdir, "run"))
  metrics = common.evaluate(config, params, step, os.path.join(workdir, "run"),
                            baseline.evaluators, seed)
  samples = np.asarray(family.sample_fn(64)(params, jax.random.PRNGKey(seed)))
  grid = save_samples(workdir, "samples", samples, family.to_uint8(samples))
  measured = {m.name: metrics.get(f"eval/{m.name}", float("nan")) for m in baseline.metrics}
  pictures = [os.path.join(workdir, "samples.png")] if grid is not None else []
  return Outcome(measured, pictures, {"metrics": metrics, "step": step})


# GPU tier: a paper's recipe on MNIST / Fashion-MNIST / the CIFAR-10 sample, an hour or less
# on one GPU each. No paper reports numbers here: the bands are sanity floors (the
# per-position categorical model's bits/dim; the classifier-feature floor).
_GPU_STEPS = {"training.num_train_steps": 30_000, "training.batch_size": 128,
              "training.sample_every": 10_000, "eval.bpd.num_examples": 1000,
              "eval.classifier_fid.num_samples": 10_000}


def gpu_recipe(name: str, paper: str, config: str, dataset: str, floor: Optional[float],
               overrides: Dict[str, Any]) -> Baseline:
  """A recipe's baseline to establish on one GPU: bits/dim below ``floor`` (the
  per-position categorical model's bits/dim; None: no bits/dim) and the classifier
  metric near its real-data floor, after 30,000 steps of 128 (``overrides`` on top)."""
  metrics = []
  if floor is not None:
    metrics.append(Metric(
        "bpd", f"< {floor}", (0.0, floor),
        f"must beat the per-position categorical model ({floor} bits/dim), a sanity floor",
        "bits/dim, DDPM's calc_bpd_loop, 1,000 test images, EMA."))
  metrics.append(Metric(
      "cfid", "near the floor", (0.0, 10.0),
      "within a few times the real-data floor of the classifier features (reported beside)",
      common.CLASSIFIER_PROTOCOL.replace("297 samples", "10,000 samples (CIFAR sample: 1,000)")))
  return Baseline(
      name=name, paper=paper, where="no paper number (a baseline to establish)",
      dataset=dataset, experiment=train_evaluate, config=config,
      evaluators=(("bpd",) if floor is not None else ()) + ("classifier_fid",),
      metrics=tuple(metrics),
      tiers={"gpu": Budget(dict(_GPU_STEPS, **overrides), 60, common.GPU,
                           runnable_here=False)},
      note="Ready for a GPU; not run here (no GPU was lent to this project's tasks).")


# ---------------------------------------------------------------------------
# The papers' released weights (python -m diffusion.pretrained import): evaluate only
# ---------------------------------------------------------------------------

FID_PROTOCOL = ("FID of 50,000 samples against the training set's statistics (pytorch-fid's "
                "Inception weights), samples truncated to uint8")


def fid_protocol(sampling: Dict[str, Any], metrics: Optional[Dict[str, str]] = None):
  """One protocol of :func:`evaluate_weights`: FID of 50,000 samples drawn with
  ``sampling`` (``sampling.*`` fields), reported as ``metrics`` ({metric: eval key})."""
  return {"eval": "fid", "sampling": sampling, "eval.fid.num_samples": 50_000,
          "metrics": metrics or {"fid": "fid"}}


def _imported_run(baseline, weights: str) -> str:
  """The imported run ``weights`` (its config.json and checkpoint), or one line saying
  how to make it."""
  make = ("import the release first: python -m diffusion.pretrained import <the release> "
          "--workdir=DIR (README: Pretrained weights), then pass --weights=DIR")
  if not weights:
    raise ConfigError(f"{baseline.name} evaluates a released model: {make}.")
  if not os.path.isfile(os.path.join(weights, "config.json")):
    raise ConfigError(f"--weights={weights} holds no run (no config.json); {make}.")
  return weights


def evaluate_weights(baseline, budget, workdir: str, seed: int = 0, weights: str = "",
                     inception_weights: str = "") -> Outcome:
  """Evaluates an imported release with each protocol of the entry; trains nothing.

  ``budget.overrides["protocols"]``: {protocol: {"eval": evaluator, "sampling": {...},
  "metrics": {metric: eval key}, "<section.field>": value ...}}: one evaluator run per
  protocol (e.g. 50,000 samples give FID and IS), under the protocol's sampling settings
  and overrides. The inputs (the imported run, the FID Inception weights, the reference
  data) are checked before anything is sampled.
  """
  run_dir = _imported_run(baseline, weights)
  base = load_config(run_dir)
  protocols = budget.overrides["protocols"]
  uses_fid = any(p["eval"] == "fid" for p in protocols.values())
  if uses_fid and not (inception_weights and os.path.isfile(inception_weights)):
    raise ConfigError(f"{baseline.name} computes FID / IS: pass --inception_weights=FILE, the "
                      "converted pt_inception-2015-12-05 weights (python -m diffusion.evals."
                      "inception_convert; docs/evaluators.md).")
  jobs = []
  for name, protocol in protocols.items():   # build everything first: fail before sampling
    changes = {f"sampling.{k}": v for k, v in protocol.get("sampling", {}).items()}
    changes.update({k: v for k, v in protocol.items() if "." in k})
    if uses_fid:
      changes["eval.fid.inception_weights"] = inception_weights
    config = checks.validate(apply_overrides(base, changes))
    family = families.make_family(config)
    (evaluator,) = evals.make_evaluators(family, run_dir, [protocol["eval"]], seed=seed,
                                         output_dir=workdir)
    jobs.append((name, protocol, family, evaluator))
  if uses_fid:   # the training split the FID statistics need (read once, cached in the run)
    make_source(base.data, split=base.data.split)
  # Protocols change only sampling and evaluation: one restore serves them all.
  params, step = restore_ema_params(run_dir, jobs[0][2])
  measured, details = {}, {}
  for name, protocol, family, evaluator in jobs:
    metrics = evaluator.run(params, step)
    for metric, key in protocol["metrics"].items():
      measured[metric] = float(metrics.get(f"eval/{key}", float("nan")))
    details[name] = {"protocol": protocol, "metrics": metrics, "summary": evaluator.summary()}
    print(f"{name}: {evaluator.summary()}", flush=True)
  return Outcome(measured, [], details)

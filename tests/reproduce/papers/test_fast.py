"""diffusion/reproduce/papers/fast.py, and ddim.py's entry with its σ̂
row (item 5; the row itself: tests/reproduce/papers/test_ddim.py): every protocol of the
GPU entries is a sampling a user could run (it passes the config schema and the sampler's
own rules for DDPM's T = 1000), every metric has the protocol that measures it, and the
few-step table has both σ policies for each sampler at the NFE the metric names (heun:
2N − 1 evaluations)."""

import pytest

from diffusion import samplers
from diffusion.config import SamplingConfig
from diffusion.reproduce.papers import ddim, fast


def _protocols(baseline):
  return baseline.tiers["weights"].overrides["protocols"]


@pytest.mark.parametrize("baseline", [fast.CIFAR10_WEIGHTS, ddim.CIFAR10_WEIGHTS],
                         ids=lambda b: b.name)
def test_every_protocol_samples_and_every_metric_is_measured(baseline):
  produced = set()
  for protocol in _protocols(baseline).values():
    produced |= set(protocol["metrics"])
    if "sampling" not in protocol:                    # the likelihood: no sampler
      continue
    typed = SamplingConfig.parse(dict(protocol["sampling"]))
    options = {k: getattr(typed, k) for k in samplers.reads(typed.method)}
    samplers.check(1000, typed.method, **options)
  assert {m.name for m in baseline.metrics} == produced


def test_the_few_step_table_has_both_policies_at_the_named_nfe():
  protocols = _protocols(fast.CIFAR10_WEIGHTS)
  for name in fast.FEW_STEP:
    for policy in fast.POLICIES:
      rows = {k: p for k, p in protocols.items() if k.startswith(f"{name}_{policy}_")}
      nfes = sorted(int(k.rsplit("_", 1)[1]) for k in rows)
      assert nfes == ([5, 8, 10, 20] if name == "heun" else [5, 6, 8, 10, 20]), (name, nfes)
      for k, p in rows.items():
        nfe, steps = int(k.rsplit("_", 1)[1]), p["sampling"]["num_steps"]
        assert p["sampling"]["sigma_policy"] == policy
        assert (2 * steps - 1 if name == "heun" else steps) <= nfe, k
        assert (2 * steps - 1 if name == "heun" else steps) >= nfe - 1, k

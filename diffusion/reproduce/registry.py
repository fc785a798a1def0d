"""The registry: name -> baseline, every paper table cell or figure this project
reproduces, written out once from the papers' entries (``diffusion/reproduce/papers/``).

Tiers, in the order listed: ``cpu`` (minutes on 2 CPU cores; run here and asserted by the
test suite), ``gpu`` (an hour or less on one GPU; ready, run where a GPU is lent),
``paper`` (the full run), ``weights`` (a released model, evaluated). Bands say what we
accept and why; a claim (an ordering, a pattern) measures 1 when it holds. The order here
is the order of ``python -m diffusion.reproduce list`` and of docs/reproducing.md's table.
"""

from typing import Dict, Tuple

from diffusion.reproduce.papers import ddim, ddpm, dpm, fast, ncsn, ncsnv2, vae
from diffusion.reproduce.schema import Baseline

ENTRIES: Tuple[Baseline, ...] = (
    # cpu
    ncsn.FIG3_EXACT, ncsn.FIG3_LEARNED, dpm.SWISS_ROLL, ddpm.DIGITS_OBJECTIVES, ddim.STEPS,
    ncsn.DIGITS_REFINENET, ncsnv2.MNIST_SIGMAS, vae.MNIST,
    # gpu
    ddpm.MNIST, dpm.MNIST, ncsn.MNIST, ddpm.FASHION_MNIST, ddpm.CIFAR10_SAMPLE,
    # paper
    ddpm.CIFAR10, ncsn.CIFAR10, ncsnv2.CIFAR10, dpm.CIFAR10,
    # weights
    ddpm.CIFAR10_WEIGHTS, ddim.CIFAR10_WEIGHTS, ddpm.CHURCH_WEIGHTS, ddpm.BEDROOM_WEIGHTS,
    fast.CIFAR10_WEIGHTS, ncsnv2.CIFAR10_WEIGHTS, ncsnv2.CELEBA_WEIGHTS,
)
BASELINES: Dict[str, Baseline] = {baseline.name: baseline for baseline in ENTRIES}

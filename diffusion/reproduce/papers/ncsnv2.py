"""Song & Ermon 2020, "Improved Techniques for Training Score-Based Generative Models"
(NCSNv2): techniques 1-2 (§3) computed from MNIST, Table 1 on CIFAR-10 (paper tier) and
from the released checkpoints (CIFAR-10, CelebA 64)."""

import numpy as np

from diffusion.core import schedules
from diffusion.data import make_source
from diffusion.reproduce import common, generic
from diffusion.reproduce.common import CPU, GPU
from diffusion.reproduce.generic import FID_PROTOCOL, fid_protocol
from diffusion.reproduce.schema import Baseline, Budget, Metric, Outcome


def ncsnv2_sigmas(baseline, budget, workdir: str, seed: int = 0) -> Outcome:
  """NCSNv2 technique 1 (σ₁ = the largest pairwise distance of the training set, [0, 1]
  pixels) and 2 (γ with C(γ, D) = the released configs' 0.567; L from σ₁/σ_L = γ^{L−1},
  σ_L = 0.01) computed from the data."""
  del workdir, seed
  config = common.load_config_file(baseline.config, budget.overrides)
  images = make_source(config.data).arrays["images"]
  x = images.reshape(len(images), -1).astype(np.float64) / 255.0
  sigma1 = schedules.max_pairwise_distance(x)
  gamma = schedules.ncsnv2_gamma(x.shape[1], overlap=0.567)
  levels = schedules.ncsnv2_num_levels(0.01, sigma1, gamma)
  return Outcome({"sigma_1": sigma1, "num_levels": float(levels)},
                 details={"gamma": gamma, "num_train": len(x), "dim": x.shape[1]})


MNIST_SIGMAS = Baseline(
    name="ncsnv2_mnist_sigmas", paper="Song & Ermon 2020 (NCSNv2)",
    where="techniques 1-2 (§3)", dataset="MNIST", experiment=ncsnv2_sigmas,
    config="configs/ncsn/mnist.py",
    metrics=(
        Metric("sigma_1", 16.8758, (16.8757, 16.8759),
               "an exact computation: the largest pairwise L2 distance of the 60,000 "
               "training images in [0, 1] (pair 26785, 59452)",
               "technique 1 on the official MNIST training split."),
        Metric("num_levels", 101, (101, 101),
               "exact: the geometric ladder from σ₁ to 0.01 with ratio γ solving "
               "C(γ, 784) = 0.567, the overlap the released configs realise",
               "technique 2, σ_L = 0.01."),
    ),
    tiers={"cpu": Budget({"data.image_size": 28}, 3, CPU)},
    note="MNIST at its own 28 x 28 (D = 784; the config pads to 32 for the U-Net, "
         "which would change D and so L). Needs MNIST prepared offline (python -m "
         "diffusion.data prepare mnist --manual_dir ../shared/data/mnist).")

CIFAR10 = Baseline(
    name="ncsnv2_cifar10", paper="Song & Ermon 2020 (NCSNv2)", where="Table 1, with denoising",
    dataset="CIFAR-10", experiment=generic.train_evaluate,
    config="configs/ncsn/ncsnv2_cifar10.py", evaluators=("fid",),
    metrics=(Metric("fid", 10.87, (10.2, 11.6),
                    "the paper's own network (NCSNv2); ±6% for training seeds and the "
                    "Inception port",
                    "FID of 50,000 samples vs the training set, 5 steps per level, "
                    "ε = 6.2e-6, final denoising step."),),
    tiers={"paper": Budget({"eval.fid.num_samples": 50_000}, 1800, GPU, runnable_here=False)},
    note="Needs full CIFAR-10 and the Inception weights.")

# The released checkpoints (python -m diffusion.pretrained import checkpoint.pth).
CIFAR10_WEIGHTS = Baseline(
    name="ncsnv2_cifar10_weights", paper="Song & Ermon 2020 (NCSNv2)",
    where="Table 1, with denoising", dataset="CIFAR-10", experiment=generic.evaluate_weights,
    config=None,
    metrics=(Metric("fid", 10.87, (10.2, 11.6), "the released model; sampling seeds and "
                    "the Inception port", FID_PROTOCOL + "; annealed Langevin, 5 steps per "
                    "level, ε = 6.2e-6, from U[0, 1], final denoising step, EMA."),
             Metric("is_mean", 8.40, (8.2, 8.6), "the paper's ± 0.07 and the Inception port",
                    "Inception score of the same samples, 10 splits.")),
    tiers={"weights": Budget({"protocols": {"samples": fid_protocol(
        {"method": "annealed_langevin", "n_steps_each": 5, "step_size": 6.2e-6,
         "denoise": True, "init": "uniform"}, {"fid": "fid", "is_mean": "is_mean"})}},
        300, GPU, runnable_here=False)},
    note="The NCSNv2 CIFAR-10 checkpoint imported with its config.yml (--weights); full "
         "CIFAR-10 for the statistics.")

CELEBA_WEIGHTS = Baseline(
    name="ncsnv2_celeba_weights", paper="Song & Ermon 2020 (NCSNv2)",
    where="Table 1, CelebA 64, with denoising", dataset="CelebA 64",
    experiment=generic.evaluate_weights, config=None,
    metrics=(Metric("fid", 10.23, (9.6, 10.9), "the released model; sampling seeds and the "
                    "Inception port", FID_PROTOCOL.replace("the training set's", "the data's")
                    + "; 5 steps per level, ε = 3.3e-6, denoising, EMA."),),
    tiers={"weights": Budget({"protocols": {"samples": fid_protocol(
        {"method": "annealed_langevin", "n_steps_each": 5, "step_size": 3.3e-6,
         "denoise": True, "init": "uniform"})}}, 600, GPU, runnable_here=False)},
    note="The NCSNv2 CelebA checkpoint imported (--weights); CelebA (tfds). The paper's "
         "statistics are of the test split (celeba_test_fid_stats); set data.split to match.")

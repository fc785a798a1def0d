"""The papers' choices, as plain data: variants and their changes to the defaults.

The dataclass defaults of the sections are DDPM's (Ho et al. 2020); a variant is a
short record of what its paper changes (EDM2's preset table model). Nothing here is
code: ``default_config(variant)`` (:mod:`diffusion.config`) applies a preset, and
``configs/base.py`` is made from it, so a default exists in one place only.
"""

from typing import Any, Dict

# diffusion.variant -> its forward process: ddpm, dpm: VP; ncsn: VE.
PROCESS_OF_VARIANT = {"ddpm": "vp", "ncsn": "ve", "dpm": "vp"}
VARIANTS = tuple(PROCESS_OF_VARIANT)
DEFAULT_VARIANT = VARIANTS[0]

# A grid is a look at the model while it trains, not a measurement: it need not pay for
# the paper's 1,000-step chain (six silent minutes at the end of an MNIST run).
# DDPM's grids take DDIM's 50 steps (Song et al. 2020, Table 1: FID 4.67 against the
# 1,000-step chain's 3.17 on CIFAR-10), 20x fewer network evaluations.
GRID_METHOD, GRID_STEPS = "ddim", 50

# The papers' choices per variant, as changes to the dataclass defaults (which are DDPM's).
VARIANT_PRESETS: Dict[str, Dict[str, Dict[str, Any]]] = {
    # Ho et al. 2020: VP, linear beta 1e-4 -> 0.02, T = 1000, L_simple, ancestral
    # sampling with fixedlarge variance (grids while training: DDIM 50): the dataclass
    # defaults.
    "ddpm": {},
    # Song & Ermon 2019: VE, geometric sigma 1 -> 0.01, L = 10, DSM with
    # lambda(sigma) = sigma^2 (= eps-MSE), data in [0, 1] dequantized, annealed Langevin.
    "ncsn": {
        "diffusion": dict(variant="ncsn", schedule="geometric", num_timesteps=10),
        "data": dict(centered=False, uniform_dequantization=True),
        # Both NCSN codes map their [0, 1] inputs to 2x - 1 inside the network and use no
        # dropout (ncsn models/cond_refinenet_dilated.py, ncsnv2 models/ncsnv2.py).
        "model": dict(rescale_inputs=True, dropout=0.0),
        "sampling": dict(method="annealed_langevin"),
        # Grids with annealed Langevin too: NCSN's ladders (L = 10) are shorter than 50 steps.
        "training": dict(grid_method="", grid_steps=0),
    },
    # Sohl-Dickstein et al. 2015: VP with the DPM code's fixed schedule, learned reverse
    # variance, trained on the variational bound. Not dequantized: the bound's t = 0
    # term is DDPM's discretized decoder on the 8-bit pixels.
    "dpm": {
        "diffusion": dict(variant="dpm", schedule="dpm", loss="kl", var_type="learned_range"),
        # The DPM code (train.py) steps with RemoveNotFinite + RMSProp: no clipping.
        "optim": dict(grad_clip=0.0),
        # Grids with the learned-variance ancestral chain (DDIM would ignore the variance).
        "training": dict(grid_method="", grid_steps=0),
    },
    # Kingma & Welling 2013: a mean-field VAE on dynamically binarized MNIST, Adam with a
    # cosine decay (the defaults of configs/vae/mnist.py refine this).
    "vae": {
        "family": "vae",
        "data": dict(dataset="mnist", image_size=28, num_channels=1, centered=False,
                     random_flip=False, binarize="dynamic"),
        "optim": dict(lr=1e-3, warmup_steps=0, grad_clip=0.0, lr_schedule="cosine",
                      decay_steps=100_000, min_lr=1e-5),
        "training": dict(num_train_steps=100_000, batch_size=128, ema_decay=0.0,
                         log_every=500, checkpoint_every=10_000, sample_every=20_000,
                         grid_method="", grid_steps=0),   # grids: decoder means
    },
}


# Fields held as arrays in the train state (optimizer hyperparameters in opt_state; seed,

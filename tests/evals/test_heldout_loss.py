"""The held-out loss evaluator (a search's default metric): one fixed (x0, t, ε) set per
seed, the family's loss on it, against an independent float64 computation."""

import types

import jax
import numpy as np
import pytest

from diffusion import families
from diffusion.config import parse_config
from diffusion.core import schedules
from diffusion.evals.heldout_loss import HeldoutLoss, heldout_data, heldout_keys

MIXTURE = {"weights": (0.8, 0.2), "means": ((5.0, 5.0), (-5.0, -5.0)), "stds": (1.0, 1.0)}


def _family(model="analytic", **overrides):
  config = {"data": {"dataset": "mixture", "num_channels": 2, "image_size": 1,
                     "mixture_weights": MIXTURE["weights"], "mixture_means": MIXTURE["means"],
                     "mixture_stds": MIXTURE["stds"]},
            "diffusion": {"schedule": "cosine", "num_timesteps": 100},
            "model": {"name": model, "out_channels": 2, "hidden_dims": (16,)}}
  for key, value in overrides.items():
    section, field = key.split(".")
    config.setdefault(section, {})[field] = value
  return families.make_family(parse_config(config))


def _section(**kw):
  return types.SimpleNamespace(**{"every": 10, "num_examples": 300, "batch_size": 128,
                                  "seed": 3, **kw})


def _exact_eps(x, ab):
  """ε* of the mixture at noise level ᾱ, float64: −√(1 − ᾱ) ∇ log p_t(x)."""
  w = np.asarray(MIXTURE["weights"])
  mu = np.asarray(MIXTURE["means"]) * np.sqrt(ab)[:, None, None]          # [B, K, D]
  var = np.asarray(MIXTURE["stds"]) ** 2 * ab[:, None] + (1.0 - ab[:, None])   # [B, K]
  diff = x[:, None, :] - mu
  log_r = np.log(w) - 0.5 * np.sum(diff ** 2, -1) / var - np.log(var)      # D = 2
  r = np.exp(log_r - log_r.max(1, keepdims=True))
  r /= r.sum(1, keepdims=True)
  score = np.sum(r[:, :, None] * (-diff / var[:, :, None]), axis=1)
  return -np.sqrt(1.0 - ab)[:, None] * score


def test_heldout_loss_of_the_exact_model_against_float64():
  """The analytic (exact-ε) model: the evaluator's mean over 300 examples in 3 chunks
  (the last padded) against the ε-MSE computed here in float64 from the documented draw."""
  family = _family()
  cfg = _section()
  ev = HeldoutLoss(cfg, family)
  got = ev.run({}, step=10)
  x0 = heldout_data(family, cfg.num_examples, cfg.seed).astype(np.float64)
  assert x0.shape == (300, 2)
  ab_all = np.cumprod(1.0 - schedules.get_beta_schedule("cosine", 100))
  _, loss_key = heldout_keys(cfg.seed)
  per_example = []
  for i, start in enumerate(range(0, 300, 128)):
    chunk = x0[start:start + 128]
    padded = np.concatenate([chunk, np.repeat(chunk[-1:], 128 - len(chunk), 0)])
    k_t, k_noise, _ = jax.random.split(jax.random.fold_in(loss_key, i), 3)
    t = np.asarray(jax.random.randint(k_t, (128,), 0, 100))
    noise = np.asarray(jax.random.normal(k_noise, padded.shape), np.float64)
    ab = ab_all[t]
    x_t = np.sqrt(ab)[:, None] * padded + np.sqrt(1.0 - ab)[:, None] * noise
    mse = np.mean((_exact_eps(x_t, ab) - noise) ** 2, axis=1)
    per_example.append(mse[:len(chunk)])
  want = np.concatenate(per_example)
  assert abs(got["eval/heldout_loss"] - want.mean()) < 2e-4 * want.mean()
  assert abs(got["eval/heldout_loss_se"] - want.std(ddof=1) / np.sqrt(300)) < 1e-3 * want.mean()
  assert "300 fixed (x0, t, eps) of seed 3" in ev.summary()


def test_the_set_is_the_same_for_every_run_of_a_seed_and_matches_the_training_loss():
  """Runs that differ in population fields (lr, EMA, training seed) score the same set; a
  different seed is another set; on one chunk the mean is the training loss_fn's with that key
  (the MLP has no dropout)."""
  a = _family("mlp", **{"optim.lr": 1e-3, "training.seed": 0})
  b = _family("mlp", **{"optim.lr": 5e-4, "training.seed": 4, "training.ema_decay": 0.5})
  np.testing.assert_array_equal(heldout_data(a, 64, 3), heldout_data(b, 64, 3))
  assert not np.array_equal(heldout_data(a, 64, 3), heldout_data(a, 64, 4))
  params = a.init_params(jax.random.PRNGKey(0))
  cfg = _section(num_examples=64, batch_size=64)
  assert HeldoutLoss(cfg, a).run(params, 1) == HeldoutLoss(cfg, b).run(params, 1)
  other = HeldoutLoss(_section(num_examples=64, batch_size=64, seed=4), a).run(params, 1)
  assert other["eval/heldout_loss"] != HeldoutLoss(cfg, a).run(params, 1)["eval/heldout_loss"]
  x0 = heldout_data(a, 64, 3)
  key = jax.random.fold_in(heldout_keys(3)[1], 0)
  train_loss, _ = a.loss_fn(params, x0, key, {})
  assert abs(float(train_loss) - HeldoutLoss(cfg, a).run(params, 1)["eval/heldout_loss"]) < 1e-6


def test_heldout_images_are_the_eval_split_scaled_as_training_scales_them():
  config = parse_config({"data": {"dataset": "digits", "image_size": 8, "num_channels": 1,
                                  "random_flip": False},
                         "model": {"name": "unet", "ch": 32, "ch_mult": (1,),
                                   "num_res_blocks": 1, "attn_resolutions": ()},
                         "diffusion": {"num_timesteps": 10}})
  family = families.make_family(config)
  x0 = heldout_data(family, 20, 0)
  assert x0.shape == (20, 8, 8, 1) and x0.min() >= -1.0 and x0.max() <= 1.0
  from diffusion.data import make_source  # pylint: disable=import-outside-toplevel
  test = make_source(config.data, split="test").arrays["images"][:20]
  np.testing.assert_allclose(x0, test.astype(np.float32) / 255.0 * 2 - 1, atol=1e-6)


def test_vae_heldout_loss_is_its_training_loss_with_a_fixed_key():
  from configs.vae import digits  # pylint: disable=import-outside-toplevel
  config = digits.get_config()
  family = families.make_family(parse_config(config.to_dict()))
  params = family.init_params(jax.random.PRNGKey(1))
  x = heldout_data(family, 32, 0)
  key = jax.random.PRNGKey(9)
  want, _ = family.loss_fn(params, x, key, family.loss_hparams())
  got = np.mean(np.asarray(family.heldout_losses(params, x, key)))
  assert got == pytest.approx(float(want), rel=1e-5)

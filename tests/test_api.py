"""The README's "Python API" walk-through, on a small model: the documented names work."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffusion
from configs import base
from diffusion.paths import REPO


def test_readme_python_api_walkthrough():
  config = base.get_config("ddpm")
  config.diffusion.num_timesteps = 20
  config.model.update(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,),
                      out_channels=1, dropout=0.0)
  config.data.update(dataset="digits", image_size=8, num_channels=1, random_flip=False)
  config.sampling.num_steps = 5
  config.sampling.method = "ddim"

  process = diffusion.make_process(config.diffusion)
  assert isinstance(process, diffusion.VPProcess)
  assert process.betas.dtype == jnp.float32 and process.alphas_cumprod.shape == (20,)

  source = diffusion.make_source(config.data, split="train")
  x0 = source.get_batch(source.arrays, jax.random.PRNGKey(0), 4)
  assert x0.shape == (4, 8, 8, 1) and float(x0.min()) >= -1.0 and float(x0.max()) <= 1.0
  t = jnp.array([0, 5, 10, 19], jnp.int32)
  noise = jax.random.normal(jax.random.PRNGKey(1), x0.shape)
  x_t = process.q_sample(x0, t, noise)
  abar = np.asarray(process.alphas_cumprod)[np.asarray(t)][:, None, None, None]
  np.testing.assert_allclose(x_t, np.sqrt(abar) * x0 + np.sqrt(1 - abar) * noise, atol=1e-5)
  mean, var, log_var = process.q_posterior(x0, x_t, t)
  assert mean.shape == x0.shape and var.shape[0] == 4
  np.testing.assert_allclose(process.predict_x0(x_t, t, noise), x0, atol=1e-4)

  module = diffusion.make_model(config.model)
  params = module.init(jax.random.PRNGKey(0), x0[:1], jnp.zeros((1,)))["params"]
  eps_fn = diffusion.make_eps_fn(module, params, process, config.model)
  terms = diffusion.training_losses(process, eps_fn, x0, t, noise, config.diffusion)
  assert terms["loss"].shape == (4,)
  # Zero-initialised output layer: eps_hat = 0, so L_simple = E[noise^2] per example.
  np.testing.assert_allclose(terms["loss"], np.mean(np.square(noise), axis=(1, 2, 3)),
                             rtol=1e-5)

  samples = diffusion.sample(eps_fn, process, (3, 8, 8, 1), jax.random.PRNGKey(2),
                             config.sampling)
  assert samples.shape == (3, 8, 8, 1) and bool(jnp.all(jnp.isfinite(samples)))
  direct = diffusion.samplers.sample(eps_fn, process, (3, 8, 8, 1), jax.random.PRNGKey(2),
                                     method="ddim", num_steps=5)   # no config object
  np.testing.assert_array_equal(np.asarray(direct), np.asarray(samples))


def test_plain_dict_configs_are_accepted():
  process = diffusion.make_process({"variant": "ncsn", "num_timesteps": 5,
                                    "sigma_min": 0.01, "sigma_max": 1.0})
  assert isinstance(process, diffusion.VEProcess)
  np.testing.assert_allclose(process.sigmas, np.geomspace(0.01, 1.0, 5), rtol=1e-6)
  module = diffusion.make_model({"name": "mlp", "hidden_dims": (8,), "out_channels": 2})
  params = module.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)), jnp.zeros((1,)))["params"]
  eps_fn = diffusion.make_eps_fn(module, params, process, {"name": "mlp"})
  assert eps_fn(jnp.ones((3, 2)), jnp.array([0, 1, 4])).shape == (3, 2)


def test_data_config_may_omit_size_and_channels():
  """A minimal dict config takes the dataset's own image size and channel count."""
  source = diffusion.make_source({"dataset": "digits"})
  assert source.shape == (8, 8, 1) and source.num_examples == 1500


def test_readme_python_api_code_runs(tmp_path, monkeypatch, caplog):
  """The code block of the README's "Python API" section, run as printed in an empty
  namespace (in tmp_path);
  ``diffusion.load`` does not pass on orbax's notes about its read-only options."""
  import pathlib, re  # pylint: disable=import-outside-toplevel,multiple-imports
  readme = (pathlib.Path(REPO) / "README.md").read_text()
  section = readme[readme.index("## Python API"):readme.index("## Architecture")]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  monkeypatch.chdir(tmp_path)
  monkeypatch.syspath_prepend(REPO)
  scope = {"__name__": "__main__"}   # as printed: nothing defined beforehand
  exec(compile(code, "README.md", "exec"), scope)  # pylint: disable=exec-used
  assert not [r.getMessage() for r in caplog.records if "read only" in r.getMessage()
              or "read_only" in r.getMessage()]
  assert scope["run"].step == 40 and scope["x"].shape == (256, 2)
  assert scope["eps"].shape == (256, 2) and scope["y"].shape == (64, 2)
  assert np.isfinite(np.asarray(scope["losses"]["loss"])).all()
  out = scope["out"]                      # diffusion.generate: what sample.py writes
  assert out.output == os.path.join("runs", "api_demo", "samples_40_ddim_s20_eta0_seed0")
  assert out.samples.shape == (64, 2) and out.meta["steps"] == 20
  assert sorted(os.listdir(out.output)) == ["meta.json", "samples.npz"]
  with pytest.raises(diffusion.ConfigError, match="VAE runs"):
    scope["run"].encode(scope["x"])

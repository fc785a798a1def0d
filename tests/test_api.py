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


# ---- arguments checked as the command lines check their flags -----------------


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
  """A tiny 8x8x1 DDPM run (T = 20, untrained) written as train.py writes step 0."""
  from diffusion import families
  from diffusion.config import checks
  from diffusion.pretrained import importer
  config = base.get_config("ddpm")
  config.diffusion.num_timesteps = 20
  config.model.update(ch=32, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(),
                      out_channels=1, dropout=0.0)
  config.data.update(dataset="digits", image_size=8, num_channels=1, random_flip=False)
  config.sampling.update(method="ddim", num_steps=2)
  cfg = checks.validate(config)
  workdir = tmp_path_factory.mktemp("api") / "run"
  params = families.make_family(cfg).init_params(jax.random.PRNGKey(0))
  importer.write_run(cfg, params, str(workdir), 0, {})
  return str(workdir)


@pytest.mark.parametrize("workdir, step, names", [
    (123, -1, "workdir=123"), (None, -1, "workdir=None"), ("", -1, "workdir=''"),
    ("RUN", "12", "step='12'"), ("RUN", 12.0, "step=12.0"), ("RUN", -2, "step=-2"),
    ("RUN", True, "step=True"), ("RUN", 7, "7"), ("MISSING", -1, "no config.json")])
def test_load_refuses_a_bad_argument_in_one_line(image_run, tmp_path, workdir, step, names):
  """load(DIR, step=-2) used to load the newest checkpoint; step="12" and 12.0 failed deep
  inside; each is now one ConfigError line naming the argument."""
  workdir = {"RUN": image_run, "MISSING": str(tmp_path)}.get(workdir, workdir)
  with pytest.raises(diffusion.ConfigError) as e:
    diffusion.load(workdir, step=step)
  assert "\n" not in str(e.value) and names in str(e.value), str(e.value)


def test_load_names_the_file_of_a_damaged_config(image_run, tmp_path):
  import shutil
  run = tmp_path / "run"
  shutil.copytree(image_run, run)
  text = (run / "config.json").read_text()
  (run / "config.json").write_text(text.replace('"num_timesteps": 20', '"num_timesteps": "x"'))
  with pytest.raises(diffusion.ConfigError) as e:
    diffusion.load(run)
  assert "\n" not in str(e.value) and str(run / "config.json") in str(e.value)


@pytest.mark.parametrize("x, t, names", [
    ("ok", 20, "t=20"), ("ok", 1000, "t=1000"), ("ok", -1, "t=-1"), ("ok", 10.7, "t=10.7"),
    ("ok", float("nan"), "t=nan"), ("ok", [1, 2, 3], "t has shape (3,)"),
    ("ok", [[1, 2]], "t has shape (1, 2)"), ("ok", "3", "t must be a numeric array"),
    ("channels3", 3, "x_t has shape (2, 8, 8, 3)"), ("nchw", 3, "NCHW"),
    ("flat", 3, "x_t has shape (2, 64)"), ("text", 3, "x_t must be a numeric array"),
    ("empty", 3, "no examples")])
def test_eps_refuses_levels_and_shapes_the_run_never_saw(image_run, x, t, names):
  """On a T = 20 run t = 20, 1000 and -1 used to return finite ε (the network at levels
  it never saw) and 10.7 was truncated to 10: now one line naming the argument."""
  run = diffusion.load(image_run)
  xs = {"ok": np.zeros((2, 8, 8, 1)), "channels3": np.zeros((2, 8, 8, 3)),
        "nchw": np.zeros((2, 1, 8, 8)), "flat": np.zeros((2, 64)), "text": "abc",
        "empty": np.zeros((0, 8, 8, 1))}
  with pytest.raises(diffusion.ConfigError) as e:
    run.eps(xs[x], t)
  assert "\n" not in str(e.value) and names in str(e.value), str(e.value)


def test_eps_accepts_integer_levels_in_range(image_run):
  run = diffusion.load(image_run)
  x = np.zeros((2, 8, 8, 1), np.float32)
  one = run.eps(x, 19)
  each = run.eps(x, np.array([19, 19]))
  whole = run.eps(x, 19.0)          # a float that is a whole number is that level
  assert one.shape == (2, 8, 8, 1) and np.isfinite(np.asarray(one)).all()
  np.testing.assert_array_equal(np.asarray(one), np.asarray(each))
  np.testing.assert_array_equal(np.asarray(one), np.asarray(whole))


@pytest.mark.parametrize("num, kwargs, names", [
    (0, {}, "num=0"), (-3, {}, "num=-3"), (2.0, {}, "num=2.0"), ("2", {}, "num='2'"),
    (2, {"seed": "a"}, "seed='a'"), (2, {"seed": -1}, "seed=-1"),
    (2, {"seed": 2 ** 32}, "seed=4294967296"), (2, {"bogus": 1}, "'bogus'"),
    (2, {"num_step": 3}, "did you mean 'num_steps'"),
    (2, {"method": "nope"}, "sampling.method"), (2, {"num_steps": -1}, "sampling.num_steps")])
def test_sample_refuses_a_bad_argument_in_one_line(image_run, num, kwargs, names):
  """Run.sample(0) used to raise ZeroDivisionError and seed="a" a jax error."""
  run = diffusion.load(image_run)
  with pytest.raises(diffusion.ConfigError) as e:
    run.sample(num, **kwargs)
  assert "\n" not in str(e.value) and names in str(e.value), str(e.value)

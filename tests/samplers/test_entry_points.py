"""Every registered sampler draws through every entry point users call (issue 33 item 1),
for a VP and a VE process, on tiny trained models (the MLP of the toy-mixture configs,
two training steps each):

  * ``diffusion.load(DIR).sample`` (the Python API): a family's jitted ``sample_fn(n,
    settings)(params, key)``, the very call reproductions and evaluators make,
  * a family's ``sample_fn(n, on_progress=...)`` (the training grid with its progress bar:
    a plan-based sampler's chain in segments; the ODE takes the jitted path above),
  * ``diffusion.generate`` (sample.py's work, in this process),
  * ``sample.py`` and ``train.py`` themselves for the sampler that failed inside the jit
    before (``ode``) and for a new one.

The ODE's step count is a traced value inside the jit; it failed there with a
ConcretizationTypeError when it was converted to int in the sampler.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import diffusion
from diffusion import samplers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.slow

KINDS = {
    "vp": ["--config=configs/ddpm/toy_mixture.py"],
    "ve": ["--config=configs/ncsn/toy_mixture.py", "--config.model.hidden_dims=(32,32)"],
}
TRAIN = ["--progress=false", "--config.training.num_train_steps=2",
         "--config.training.log_every=1", "--config.training.checkpoint_every=2",
         "--config.training.batch_size=16", "--config.training.sample_every=0",
         "--config.training.writers=jsonl"]
# Each sampler at a cheap setting (ten levels on the VE ladder).
CHEAP = {"ancestral": dict(num_steps=5), "ddim": dict(num_steps=5),
         "annealed_langevin": dict(n_steps_each=2), "pc": dict(num_steps=4),
         "ode": dict(rtol=1e-2, atol=1e-2), "heun": dict(num_steps=3),
         "dpm_solver": dict(num_steps=4, dpm_order=3), "ipndm": dict(num_steps=4),
         "unipc": dict(num_steps=3), "deis": dict(num_steps=3)}


def _run(script, *args):
  res = subprocess.run([sys.executable, os.path.join(REPO, script), *args], cwd=REPO,
                       capture_output=True, text=True, timeout=600)
  assert res.returncode == 0, (script, args, res.stderr[-3000:])
  return res


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  out = {}
  for kind, config in KINDS.items():
    workdir = tmp_path_factory.mktemp(kind)
    _run("train.py", *config, *TRAIN, f"--workdir={workdir}")
    out[kind] = str(workdir)
  return out


def test_every_sampler_is_covered():
  assert set(CHEAP) == set(samplers.SAMPLERS)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("method", sorted(CHEAP))
def test_sampler_draws_through_every_entry_point(runs, kind, method, tmp_path):
  run = diffusion.load(runs[kind])
  settings = dict(CHEAP[method], method=method)
  typed = run.config.sampling.replace(**settings)
  shape = (8,) + tuple(run.family.example_shape)
  key = jax.random.PRNGKey(0)
  drawn = {"load().sample (= reproductions, evaluators)": run.sample(8, **settings)}
  reports = []
  if samplers.SAMPLERS[method].__dict__.get("make_plan"):
    drawn["sample_fn with progress (training grid)"] = run.family.sample_fn(
        8, typed, on_progress=lambda done, total: reports.append((done, total)))(run.params,
                                                                                 key)
    assert reports and reports[-1][0] == reports[-1][1]
  generated = diffusion.generate(run.config.to_dict() | {"sampling": typed.to_dict()},
                                 runs[kind], num_samples=8, output=str(tmp_path / "out"),
                                 progress=False)
  drawn["generate (sample.py)"] = generated.samples
  for where, x in drawn.items():
    x = np.asarray(x)
    assert x.shape == shape and np.all(np.isfinite(x)), (where, x.shape)
  assert generated.meta["sampler"] == method
  if "sigma_policy" in samplers.reads(method):                     # between the levels too
    x = run.sample(8, sigma_policy="interpolate", **settings)
    assert np.asarray(x).shape == shape and np.all(np.isfinite(x))


def test_sample_py_and_the_training_grid_draw_with_ode_and_a_new_sampler(runs, tmp_path):
  for kind, method, extra in (("vp", "ode", []), ("ve", "ode", []),
                              ("vp", "unipc", ["--config.sampling.sigma_policy=interpolate"])):
    out = tmp_path / f"{kind}_{method}"
    res = _run("sample.py", f"--workdir={runs[kind]}", "--num_samples=4", "--progress=false",
               f"--sampler={method}", f"--output={out}", *extra,
               *([] if method == "ode" else ["--steps=5"]))
    meta = json.load(open(out / "meta.json"))
    assert meta["sampler"] == method and meta["count"] == 4, res.stdout
  workdir = tmp_path / "grid"                                       # a grid while training
  _run("train.py", *KINDS["ve"], *TRAIN[1:], "--progress=true",
       "--config.training.sample_every=2", "--config.training.num_samples=4",
       "--config.training.grid_method=deis", "--config.training.grid_steps=4",
       f"--workdir={workdir}")
  grids = sorted(os.listdir(workdir / "samples"))
  assert grids, os.listdir(workdir)

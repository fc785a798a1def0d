"""sample.py, the command: restores a run (EMA only), draws with any sampler, never
overwrites, says what it did, and fails before sampling in one line; diffusion.generate
writes what it writes.

Runs on a 20-step toy_mixture run (seconds) and the tiny digits run of train.py's tests."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffusion
from diffusion import samplers
from diffusion.paths import REPO

from tests.commands.test_train import error_line, run, run_cli, TINY
from tests.conftest import stderr_tail



TOY = ["--config=configs/ddpm/toy_mixture.py", "--progress=false",
       "--config.training.num_train_steps=20", "--config.training.log_every=10",
       "--config.training.checkpoint_every=10"]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("toy")
  res = run("train.py", *TOY, f"--workdir={workdir}")
  assert res.returncode == 0, stderr_tail(res.stderr)
  return workdir


def one_error_line(res, *words):
  assert res.returncode == 2, (res.stdout, stderr_tail(res.stderr, 2000))
  assert "Traceback" not in res.stderr
  last = res.stderr.strip().splitlines()[-1]
  assert last.startswith("error: "), last
  for w in words:
    assert w in last, last
  return last


# ---- the digits run of train.py's tests (tests/commands/conftest.py) ------------------------


def test_sample_cli_ddim_with_uneven_batches_and_bpd(trained_run):
  workdir, _ = trained_run
  out = workdir / "ddim_out"
  res = run("sample.py", f"--workdir={workdir}", "--num_samples=10", "--batch_size=4",
            "--sampler=ddim", "--steps=10", "--config.sampling.eta=0.5", f"--output={out}",
            "--bpd", "--progress=false")
  assert res.returncode == 0, stderr_tail(res.stderr)
  assert "sampled 10 with ddim from step 24" in res.stdout
  with np.load(out / "samples.npz") as f:
    samples = f["arr_0"]
  assert samples.shape == (10, 8, 8, 1) and samples.dtype == np.uint8
  assert (out / "samples.png").exists()
  assert "bits/dim on 8 digits/test examples" in res.stdout


def test_sample_cli_ancestral_default_output(trained_run):
  workdir, _ = trained_run
  res = run("sample.py", f"--workdir={workdir}", "--num_samples=4", "--progress=false")
  assert res.returncode == 0, stderr_tail(res.stderr)
  out, = workdir.glob("samples_24_ancestral_s*_seed0")
  with np.load(out / "samples.npz") as f:
    assert f["arr_0"].shape == (4, 8, 8, 1)


def test_sample_cli_mismatched_config_is_one_line(trained_run):
  workdir, _ = trained_run
  res = run("sample.py", f"--workdir={workdir}", "--num_samples=2", "--config.model.ch=64",
            "--progress=false")
  assert res.returncode == 2
  last = res.stderr.strip().splitlines()[-1]
  assert last.startswith("error: checkpoint") and "does not match this config" in last
  assert "Traceback" not in res.stderr


def test_sample_cli_without_a_run_is_one_line(tmp_path):
  res = run("sample.py", f"--workdir={tmp_path}", "--progress=false")
  assert res.returncode == 2
  assert res.stderr.strip().splitlines()[-1].startswith("error: --workdir=")


def test_sample_restores_ema_only_without_optimizer_or_training_data(trained_run, tmp_path):
  """sample.py builds no optimizer and never reads the training split (only --bpd's test
  split): any optimizer construction or training-split read raises in this process."""
  workdir, _ = trained_run
  script = f"""
import runpy, sys
import optax
import diffusion.data.sources as sources

def refuse(*args, **kwargs):
  raise AssertionError("sample.py built an optimizer")

optax.inject_hyperparams = optax.scale_by_adam = optax.scale_by_rms = refuse
digits = sources.DATASETS["digits"]

def no_training_split(cfg, split):
  assert split != "train", "sample.py read the training split"
  return digits(cfg, split)

sources.DATASETS["digits"] = no_training_split
sys.argv = ["sample.py", "--workdir={workdir}", "--num_samples=3", "--bpd",
            "--progress=false", "--output={tmp_path / 'out'}"]
try:
  runpy.run_path("sample.py", run_name="__main__")
except SystemExit as e:
  assert not e.code, e.code
print("restored without an optimizer")
"""
  res = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                       text=True, timeout=600)
  assert res.returncode == 0, stderr_tail(res.stderr)
  assert "restored without an optimizer" in res.stdout
  assert "bits/dim on 8 digits/test examples" in res.stdout
  with np.load(tmp_path / "out" / "samples.npz") as f:
    assert f["arr_0"].shape == (3, 8, 8, 1)


# ---- a 20-step toy_mixture run: never overwrite, say what was done, fail before sampling ----


def test_second_call_never_overwrites_and_meta_json(toy_run):
  w = toy_run
  a = run("sample.py", f"--workdir={w}", "--num_samples=5", "--progress=false")
  b = run("sample.py", f"--workdir={w}", "--num_samples=5", "--progress=false")
  c = run("sample.py", f"--workdir={w}", "--num_samples=5", "--progress=false",
          "--sampler=ddim", "--steps=10", "--config.sampling.eta=0.5", "--seed=3")
  for res in (a, b, c):
    assert res.returncode == 0, stderr_tail(res.stderr)
  # The effective number of steps is printed (the config's 0 = every level: 100).
  assert "sampling 5 with ancestral, 100 steps of 100 levels" in a.stdout
  assert "sampling 5 with ddim, 10 steps of 100 levels (--steps=10)" in c.stdout
  first = w / "samples_20_ancestral_s100_seed0"
  second = w / "samples_20_ancestral_s100_seed0_2"
  third = w / "samples_20_ddim_s10_eta0.5_seed3"
  for d in (first, second, third):
    assert (d / "samples.npz").exists() and (d / "meta.json").exists(), os.listdir(w)
  meta = json.load(open(third / "meta.json"))
  assert meta["sampler"] == "ddim" and meta["steps"] == 10 and meta["eta"] == 0.5
  assert meta["seed"] == 3 and meta["checkpoint_step"] == 20 and meta["count"] == 5
  assert meta["seconds"] > 0 and meta["date"].startswith("20")
  assert meta["checkpoint"].endswith(os.path.join("checkpoints", "20"))
  with np.load(first / "samples.npz") as f, np.load(second / "samples.npz") as g:
    np.testing.assert_array_equal(f["arr_0"], g["arr_0"])  # same settings, same samples


def test_explicit_output_holding_samples_is_refused(toy_run, tmp_path):
  out = tmp_path / "o"
  assert run("sample.py", f"--workdir={toy_run}", "--num_samples=2", "--progress=false",
             f"--output={out}").returncode == 0
  before = (out / "samples.npz").read_bytes()
  res = run("sample.py", f"--workdir={toy_run}", "--num_samples=2", "--progress=false",
            f"--output={out}", "--seed=1")
  one_error_line(res, "already holds samples")
  assert (out / "samples.npz").read_bytes() == before


def test_output_a_file_or_unwritable_fails_before_sampling(toy_run, tmp_path):
  f = tmp_path / "a_file"
  f.write_text("x")
  res = run("sample.py", f"--workdir={toy_run}", "--num_samples=2", f"--output={f}")
  one_error_line(res, "is a file")
  assert "sampling" not in res.stdout
  res = run("sample.py", f"--workdir={toy_run}", "--num_samples=2", f"--output={f}/sub")
  one_error_line(res, "is a file, not a folder")
  # Unwritable even for root: /proc refuses new files.
  res = run("sample.py", f"--workdir={toy_run}", "--num_samples=2",
            "--output=/proc/no_such/out")
  one_error_line(res, "not writable")
  assert "sampling" not in res.stdout
  if os.geteuid() != 0:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    res = run("sample.py", f"--workdir={toy_run}", "--num_samples=2", f"--output={ro}/o")
    one_error_line(res, "not writable")


def test_num_samples_beyond_memory_is_one_line(toy_run):
  res = run("sample.py", f"--workdir={toy_run}", "--num_samples=1000000000000",
            "--progress=false")
  one_error_line(res, "--num_samples=1000000000000 needs about", "give --num_samples <=")


def test_progress_is_shown(toy_run):
  res = run("sample.py", f"--workdir={toy_run}", "--num_samples=3", "--batch_size=1")
  assert res.returncode == 0, stderr_tail(res.stderr)
  assert "3/3" in res.stderr and "img" in res.stderr


def test_num_samples_zero_needs_an_evaluation(toy_run):
  res = run("sample.py", f"--workdir={toy_run}", "--num_samples=0")
  one_error_line(res, "--num_samples=0", "--bpd")


def test_no_orbax_warnings(toy_run):
  res = run("sample.py", f"--workdir={toy_run}", "--num_samples=2", "--progress=false")
  assert res.returncode == 0
  assert "read_only" not in res.stderr and "read only" not in res.stderr, res.stderr


@pytest.mark.parametrize("damage", ["truncated", "unknown_field"])
def test_damaged_config_json_is_one_line(toy_run, tmp_path, damage):
  w = tmp_path / "w"
  w.mkdir()
  text = (toy_run / "config.json").read_text()
  if damage == "truncated":
    text = text[:100]
  else:
    cfg = json.loads(text)
    cfg["model"]["bogus_field"] = 1
    text = json.dumps(cfg)
  (w / "config.json").write_text(text)
  res = run("sample.py", f"--workdir={w}", "--num_samples=2")
  last = one_error_line(res, str(w / "config.json"))
  assert ("restore it" in last) if damage == "truncated" else ("bogus_field" in last
                                                               and "Fix or remove" in last)


def test_bpd_without_sampling_announces_its_file(tmp_path):
  w = tmp_path / "digits"
  res = run("train.py", *TINY, "--config.eval.bpd.every=0", "--config.training.sample_every=0",
            f"--workdir={w}")
  assert res.returncode == 0, stderr_tail(res.stderr)
  res = run("sample.py", f"--workdir={w}", "--num_samples=0", "--eval=bpd")
  assert res.returncode == 0, stderr_tail(res.stderr)
  assert "sampled" not in res.stdout
  # Announced before it runs, with its size; a bar over the bound's terms; then the result.
  lines = res.stdout.splitlines()
  announce = [i for i, l in enumerate(lines) if l.startswith("bpd: DDPM's 50-term bound on "
                                                            "8 digits/test images")]
  result = [i for i, l in enumerate(lines) if "bits/dim on 8 digits/test examples" in l]
  assert announce and result and announce[0] < result[0], res.stdout
  assert "bpd: terms of the bound" in res.stderr and "/50 " in res.stderr
  # Named after what ran (no sampler ran), with real times.
  out = w / "eval_24_bpd_seed0"
  wrote = [l for l in res.stdout.splitlines() if l.startswith("wrote ") and "bpd" in l]
  assert wrote and os.path.exists(wrote[0].split(" ", 1)[1]), res.stdout
  assert not (out / "samples.npz").exists()
  meta = json.load(open(out / "meta.json"))
  assert meta["count"] == 0 and meta["evals"] == ["bpd"] and "sampler" not in meta
  assert 0 < meta["eval_seconds"]["bpd"] <= meta["seconds"]


@pytest.mark.parametrize("flag, start", [
    ("--batch_size=-4", "error: --batch_size=-4 is not valid"),
    ("--checkpoint_step=-5", "error: --checkpoint_step=-5 is not valid"),
    ("--num_samples=-1", "error: --num_samples=-1 is not valid"),
    ("--num_samples=0", "error: --num_samples=0 draws nothing; give --bpd"),
    ("--steps=-1", "error: --steps=-1 is not valid"),
    ("--seed=-1", "error: --seed=-1 is not valid"),
    ("--checkpoint_step=7", "error: --checkpoint_step=7 is not in"),
    ("--config.sampling.bogus=1", "error: --config.sampling.bogus: the config has no field "
                                  "'bogus'"),   # was ml_collections' traceback
])
def test_sample_cli_numeric_flags(toy_run, tmp_path, flag, start):
  workdir = toy_run
  out = tmp_path / "out"
  res = run_cli("sample.py", f"--workdir={workdir}", flag, f"--output={out}", "--progress=false")
  assert res.returncode == 2 and error_line(res.stderr).startswith(start), \
      stderr_tail(res.stderr, 2000)
  assert "Traceback" not in res.stderr and not out.exists()


def test_helpfull_shows_no_yaml_dump_of_the_config(toy_run):
  res = run("sample.py", f"--workdir={toy_run}", "--helpfull")
  text = " ".join((res.stdout + res.stderr).split())
  assert "--config.<field>=... overrides a field" in text
  assert "mixture_means" not in res.stdout + res.stderr
  # --sampler lists every registered sampler; --bpd and --fid are the evaluators' shortcuts.
  assert " | ".join(samplers.SAMPLERS) + " (default: config.sampling.method)" in text
  assert "--[no]bpd: Compute bits/dim" in text and "--[no]fid: Compute FID/IS/KID" in text


# ---- diffusion.generate writes what sample.py writes ----------------------------------------


def test_generate_from_python_writes_what_sample_py_writes(toy_run, tmp_path):
  """diffusion.generate called from Python: the samples sample.py draws with the same
  settings, the default folder named by them, meta.json returned, and ConfigError (not
  an exit) for a bad argument, before anything is written."""
  import diffusion  # pylint: disable=import-outside-toplevel
  res = run("sample.py", f"--workdir={toy_run}", "--num_samples=6", "--progress=false",
            "--sampler=ddim", "--steps=10", "--config.sampling.eta=0.5", "--seed=4",
            f"--output={tmp_path / 'cli'}")
  assert res.returncode == 0, stderr_tail(res.stderr)
  config = json.load(open(toy_run / "config.json"))
  config["sampling"]["eta"] = 0.5
  result = diffusion.generate(config, str(toy_run), num_samples=6, seed=4, sampler="ddim",
                              steps=10, progress=False)
  assert result.output == str(toy_run / "samples_20_ddim_s10_eta0.5_seed4")
  assert json.load(open(os.path.join(result.output, "meta.json"))) == result.meta
  assert result.meta["count"] == 6 and result.meta["eta"] == 0.5 and result.scores == {}
  with np.load(tmp_path / "cli" / "samples.npz") as f, \
      np.load(os.path.join(result.output, "samples.npz")) as g:
    assert f["arr_0"].shape == (6, 2)
    np.testing.assert_array_equal(f["arr_0"], result.samples)
    np.testing.assert_array_equal(g["arr_0"], result.samples)
  with pytest.raises(diffusion.ConfigError, match="--num_samples=0 draws nothing"):
    diffusion.generate(None, str(toy_run), num_samples=0, output=str(tmp_path / "none"))
  assert not (tmp_path / "none").exists()


# ---- every sampler through every entry point ---------------------------------------
# Every registered sampler draws through every entry point users call,
# for a VP and a VE process, on tiny trained models (the MLP of the toy-mixture configs,
# two training steps each):
#
#   * ``diffusion.load(DIR).sample`` (the Python API): a family's jitted ``sample_fn(n,
#     settings)(params, key)``, the very call reproductions and evaluators make,
#   * a family's ``sample_fn(n, on_progress=...)`` (the training grid with its progress bar:
#     a plan-based sampler's chain in segments; the ODE takes the jitted path above),
#   * ``diffusion.generate`` (sample.py's work, in this process),
#   * ``sample.py`` and ``train.py`` themselves for the sampler that failed inside the jit
#     before (``ode``) and for a new one.
#
# The ODE's step count is a traced value inside the jit; it failed there with a
# ConcretizationTypeError when it was converted to int in the sampler.

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
  assert res.returncode == 0, (script, args, stderr_tail(res.stderr))
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_signal_at_any_point_ends_cleanly(toy_run, tmp_path):
  """Ctrl-C (and SIGTERM, and two Ctrl-C 0.3 s apart) at many points of sample.py with
  --output: one true line and exit 2, or the finished samples and exit 0; never a crash
  (the probe saw a segmentation fault), never an empty or partial output folder, no
  marker left."""
  from tests.test_cli import assert_ended_cleanly, signalled  # pylint: disable=import-outside-toplevel
  import signal  # pylint: disable=import-outside-toplevel
  outcomes = []
  for sig, twice, delays in ((signal.SIGINT, None, (0.5, 2, 4, 6, 8, 11)),
                             (signal.SIGTERM, None, (5,)), (signal.SIGINT, 0.3, (6,))):
    for i, delay in enumerate(delays):
      out_dir = tmp_path / f"out_{sig.name}_{twice}_{i}"
      argv = [sys.executable, os.path.join(REPO, "sample.py"), f"--workdir={toy_run}",
              "--sampler=pc", "--steps=50", "--num_samples=4096", "--progress=false",
              f"--output={out_dir}"]
      for delay_, rc, out, err in signalled(argv, [delay], sig, twice):
        assert_ended_cleanly(delay_, rc, out, err, ["wrote"])
        if rc == 0:
          assert (out_dir / "meta.json").is_file()
        else:
          assert not out_dir.exists(), (delay_, os.listdir(out_dir))
        outcomes.append(rc)
  assert not [e for e in os.listdir(toy_run) if e.startswith(".") and e != ".lock"]
  print("sample.py exit statuses by signal:", outcomes)
  assert 2 in outcomes, outcomes   # at least one signal came while it worked


def _power_gamma(std):
  """γ of σ_rel by root finding on EDM2 eq. 123, σ² = (γ+1)/((γ+2)²(γ+3)) (decreasing in
  γ > 0), not the package's cubic (eq. 126)."""
  from scipy import optimize  # pylint: disable=import-outside-toplevel
  return optimize.brentq(lambda g: (g + 1) / ((g + 2) ** 2 * (g + 3)) - std ** 2, 1e-9, 1e6,
                         xtol=1e-14, rtol=1e-15)


def _power_inner(t_a, g_a, t_b, g_b):
  """∫_0^min(t_a,t_b) p_a p_b dτ of p_t(τ) = (γ+1) τ^γ / t^(γ+1), unsimplified (EDM2 eq. 121)."""
  lo = min(t_a, t_b)
  return ((g_a + 1) * (g_b + 1) * lo ** (g_a + g_b + 1)
          / ((g_a + g_b + 1) * t_a ** (g_a + 1) * t_b ** (g_b + 1)))


def test_post_hoc_ema_through_train_py_sample_py_and_load(tmp_path):
  """train.py with two tracked profiles and a snapshot every 4 steps; then σ_rel = 0.07 by
  sample.py --ema_std_rel and diffusion.load(DIR, ema_std_rel=): both against a float64
  least-squares fit re-derived here from the snapshot files read with numpy alone (γ by
  root finding on eq. 123, the Gram matrix from eq. 121's integrals, lstsq, weights
  normalised to sum to one, EDM2 App. C.3). At a tracked σ_rel the reconstruction is that
  profile (the issue's ≤ 1e-4). Bad lengths and a run without snapshots: one line each."""
  import diffusion  # pylint: disable=import-outside-toplevel
  w = tmp_path / "phema_run"
  res = run("train.py", *TOY, f"--workdir={w}", "--config.training.phema_std_rel=0.05,0.1",
            "--config.training.phema_every=4")
  assert res.returncode == 0, stderr_tail(res.stderr)
  files = sorted((w / "phema").glob("phema_*.npz"))
  snaps = [dict(np.load(p)) for p in files]
  assert [int(s["step"]) for s in snaps] == [4, 8, 12, 16, 20]
  # (step, γ, {array name: float64}) of every stored profile.
  profiles = []
  for s in snaps:
    for i, std in enumerate(s["std_rel"]):
      arrays = {k[len(str(i)):]: np.asarray(v, np.float64) for k, v in s.items()
                if k.startswith(str(i)) and k not in ("step", "std_rel")}
      profiles.append((float(s["step"]), _power_gamma(float(std)), arrays))
  assert len(profiles) == 10 and profiles[0][2]

  def rederived(std, step=20.0):
    g = _power_gamma(std)
    a = np.array([[_power_inner(ti, gi, tj, gj) for tj, gj, _ in profiles]
                  for ti, gi, _ in profiles])
    b = np.array([_power_inner(ti, gi, step, g) for ti, gi, _ in profiles])
    x = np.linalg.lstsq(a, b, rcond=None)[0]
    x /= x.sum()
    return {k: sum(xi * p[k] for xi, (_, _, p) in zip(x, profiles)) for k in profiles[0][2]}

  def loaded(std):
    params = diffusion.load(str(w), ema_std_rel=std).params
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return {jax.tree_util.keystr(path): np.asarray(leaf, np.float64) for path, leaf in flat}

  want, got = rederived(0.07), loaded(0.07)
  assert sorted(want) == sorted(got)
  scale = max(np.max(np.abs(v)) for v in want.values())
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-6 * scale, err_msg=k)
  # A tracked length: the last snapshot's own profile (σ_rel 0.1 is profile 1); 0.07 is
  # another average, far outside the tolerance above (the check can fail).
  last = {k: np.asarray(v, np.float64) for k, v in snaps[-1].items() if k.startswith("1")}
  assert max(np.max(np.abs(want[k] - last["1" + k])) for k in want) > 100 * 1e-6 * scale
  for k, v in loaded(0.1).items():
    assert np.max(np.abs(v - last["1" + k])) <= 1e-4 * np.max(np.abs(last["1" + k]))
  # sample.py draws from those parameters: the samples of a Run holding the re-derived
  # weights, the same seed and sampler.
  res = run("sample.py", f"--workdir={w}", "--num_samples=16", "--progress=false",
            "--sampler=ddim", "--steps=5", "--ema_std_rel=0.07", f"--output={tmp_path / 's'}")
  assert res.returncode == 0, stderr_tail(res.stderr)
  meta = json.load(open(tmp_path / "s" / "meta.json"))
  assert meta["ema_std_rel"] == 0.07 and meta["checkpoint_step"] == 20
  assert meta["ema_snapshots"] == 5
  reference = diffusion.load(str(w))
  reference.params = jax.tree_util.tree_map_with_path(
      lambda path, leaf: jnp.asarray(want[jax.tree_util.keystr(path)], leaf.dtype),
      reference.params)
  with np.load(tmp_path / "s" / "samples.npz") as f:
    np.testing.assert_allclose(f["arr_0"], reference.sample(16, seed=0, method="ddim",
                                                            num_steps=5), rtol=0, atol=1e-4)
  # One line each: a length outside (0, 12^-1/2), one the snapshots do not span, a run
  # trained without post-hoc EMA.
  for flag, words in [("--ema_std_rel=0.3", ["--ema_std_rel=0.3", "(0, 0.2887)"]),
                      ("--ema_std_rel=0", ["not a relative EMA length"]),
                      ("--ema_std_rel=0.001", ["cannot be reconstructed", "σ_rel in ["])]:
    one_error_line(run("sample.py", f"--workdir={w}", "--num_samples=4", flag), *words)
  res = run("train.py", *TOY, f"--workdir={tmp_path / 'plain'}",
            "--config.training.num_train_steps=10")
  assert res.returncode == 0, stderr_tail(res.stderr)
  one_error_line(run("sample.py", f"--workdir={tmp_path / 'plain'}", "--num_samples=4",
                     "--ema_std_rel=0.05"), "trained without them",
                 "--config.training.phema_std_rel=0.05,0.1")
  with pytest.raises(diffusion.ConfigError, match="no post-hoc EMA snapshots"):
    for p in files:
      os.remove(p)
    diffusion.load(str(w), ema_std_rel=0.07)

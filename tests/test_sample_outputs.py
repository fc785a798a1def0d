"""sample.py never overwrites, says what it did, and fails before sampling (issues 23, 24).

Runs on a 20-step toy_mixture run (seconds) and the tiny digits run of test_cli.
"""

import json
import os

import numpy as np
import pytest

from diffusion import samplers

from tests.test_cli import TINY, run

TOY = ["--config=configs/ddpm/toy_mixture.py", "--progress=false",
       "--config.training.num_train_steps=20", "--config.training.log_every=10",
       "--config.training.checkpoint_every=10"]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("toy")
  res = run("train.py", *TOY, f"--workdir={workdir}")
  assert res.returncode == 0, res.stderr[-3000:]
  return workdir


def one_error_line(res, *words):
  assert res.returncode == 2, (res.stdout, res.stderr[-2000:])
  assert "Traceback" not in res.stderr
  last = res.stderr.strip().splitlines()[-1]
  assert last.startswith("error: "), last
  for w in words:
    assert w in last, last
  return last


def test_second_call_never_overwrites_and_meta_json(toy_run):
  w = toy_run
  a = run("sample.py", f"--workdir={w}", "--num_samples=5", "--progress=false")
  b = run("sample.py", f"--workdir={w}", "--num_samples=5", "--progress=false")
  c = run("sample.py", f"--workdir={w}", "--num_samples=5", "--progress=false",
          "--sampler=ddim", "--steps=10", "--config.sampling.eta=0.5", "--seed=3")
  for res in (a, b, c):
    assert res.returncode == 0, res.stderr[-3000:]
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
  assert res.returncode == 0, res.stderr[-3000:]
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
  assert res.returncode == 0, res.stderr[-3000:]
  res = run("sample.py", f"--workdir={w}", "--num_samples=0", "--eval=bpd")
  assert res.returncode == 0, res.stderr[-3000:]
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


def test_bpd_in_segments_equals_one_scan():
  """The bound computed in ranges of t (to report progress) is the one-scan bound."""
  import jax
  from diffusion import make_process
  from diffusion.evals import metrics
  process = make_process({"num_timesteps": 40})
  x0 = jax.random.uniform(jax.random.PRNGKey(0), (3, 4, 4, 1), minval=-1, maxval=1)
  x0 = (jax.numpy.round((x0 + 1) * 127.5) / 127.5 - 1)
  eps_fn = lambda x, t: 0.1 * x   # noqa: E731 - any ε-model
  key = jax.random.PRNGKey(1)
  whole = metrics.calc_bpd(eps_fn, process, x0, key)
  reports = []
  parts = metrics.calc_bpd(eps_fn, process, x0, key,
                           on_progress=lambda done, total: reports.append((done, total)))
  for k in whole:
    np.testing.assert_allclose(np.asarray(parts[k]), np.asarray(whole[k]), rtol=1e-6,
                               atol=1e-7)
  assert reports[-1] == (40, 40) and len(reports) == 20


def test_helpfull_shows_no_yaml_dump_of_the_config(toy_run):
  res = run("sample.py", f"--workdir={toy_run}", "--helpfull")
  text = " ".join((res.stdout + res.stderr).split())
  assert "--config.<field>=... overrides a field" in text
  assert "mixture_means" not in res.stdout + res.stderr
  # --sampler lists every registered sampler; --bpd and --fid are the evaluators' shortcuts.
  assert " | ".join(samplers.SAMPLERS) + " (default: config.sampling.method)" in text
  assert "--[no]bpd: Compute bits/dim" in text and "--[no]fid: Compute FID/IS/KID" in text


def test_generate_from_python_writes_what_sample_py_writes(toy_run, tmp_path):
  """diffusion.generate called from Python: the samples sample.py draws with the same
  settings, the default folder named by them, meta.json returned, and ConfigError (not
  an exit) for a bad argument, before anything is written."""
  import diffusion  # pylint: disable=import-outside-toplevel
  res = run("sample.py", f"--workdir={toy_run}", "--num_samples=6", "--progress=false",
            "--sampler=ddim", "--steps=10", "--config.sampling.eta=0.5", "--seed=4",
            f"--output={tmp_path / 'cli'}")
  assert res.returncode == 0, res.stderr[-3000:]
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

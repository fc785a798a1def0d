"""Paper baselines: the registry, the CPU-tier reproductions (asserted here), the
classifier metric, and the fidelity corrections, each against an independent rule."""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffusion

from diffusion import samplers
from diffusion.config import SamplingConfig, parse_config
from diffusion.evals import metrics
from diffusion.data import transforms
from diffusion.reproduce import runner
from diffusion.reproduce.registry import BASELINES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_list_and_unknown_names():
  res = subprocess.run([sys.executable, "-m", "diffusion.reproduce", "list"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
  assert res.returncode == 0, res.stderr[-2000:]
  for name in BASELINES:
    assert f"| {name} |" in res.stdout
  res = subprocess.run([sys.executable, "-m", "diffusion.reproduce", "ncsn_fig3"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
  assert res.returncode == 2 and "did you mean" in res.stderr


def test_every_entry_is_complete():
  for name, b in BASELINES.items():
    assert b.name == name and b.metrics and b.tiers
    for m in b.metrics:
      assert m.why and m.protocol and m.band[0] <= m.band[1]
    assert callable(b.experiment)
    assert b.experiment.__module__.startswith(("diffusion.reproduce.papers.",
                                               "diffusion.reproduce.generic"))
    if b.config:
      assert os.path.isfile(os.path.join(REPO, b.config)), b.config


def test_every_papers_entry_is_in_the_registry_once():
  """An entry written in a paper's module and left out of the registry's one list, or
  listed twice (which the name -> entry dict would hide), fails here."""
  import importlib  # pylint: disable=import-outside-toplevel
  import pkgutil  # pylint: disable=import-outside-toplevel
  from diffusion.reproduce import papers, registry  # pylint: disable=import-outside-toplevel
  from diffusion.reproduce.schema import Baseline  # pylint: disable=import-outside-toplevel
  written = []
  for info in pkgutil.iter_modules(papers.__path__):
    module = importlib.import_module(f"{papers.__name__}.{info.name}")
    written += [v.name for v in vars(module).values() if isinstance(v, Baseline)]
  assert len(written) == len(set(written)) == len(registry.ENTRIES) == len(BASELINES)
  assert set(written) == set(BASELINES)


def _check_result(workdir, name):
  result = json.load(open(os.path.join(workdir, "results.json")))
  assert result["baseline"] == name and result["tier"] == "cpu"
  assert result["commit"] and result["machine"] and result["wall_time_s"] > 0
  for picture in result["pictures"]:
    assert os.path.isfile(os.path.join(workdir, picture))
  return result


def test_ncsn_fig3_with_the_exact_score(tmp_path):
  ok, result = runner.run("ncsn_fig3_exact", "cpu", str(tmp_path))
  assert ok, result["rows"]
  _check_result(str(tmp_path), "ncsn_fig3_exact")
  assert result["pictures"] == ["ncsn_fig3_exact.png"]


@pytest.mark.slow
def test_ncsn_fig3_with_a_learned_score(tmp_path):
  ok, result = runner.run("ncsn_fig3_learned", "cpu", str(tmp_path))
  assert ok, result["rows"]
  _check_result(str(tmp_path), "ncsn_fig3_learned")


@pytest.mark.slow
def test_dpm_swiss_roll_bound(tmp_path):
  ok, result = runner.run("dpm_swiss_roll", "cpu", str(tmp_path))
  assert ok, result["rows"]
  m = result["measured"]
  assert m["K_bits"] <= m["exact_log_likelihood_bits"]          # a bound is a bound
  assert m["K_minus_L_null"] == pytest.approx(m["K_bits"] + math.log2(2 * math.pi * math.e))


LONG = os.environ.get("DIFFUSION_LONG_TESTS") == "1"


@pytest.mark.slow
@pytest.mark.skipif(not LONG, reason="trains four digits U-Nets (~50 min on 2 CPU cores, "
                    "beyond the suite's budget); run with DIFFUSION_LONG_TESTS=1")
def test_digits_objectives_and_ddim_pattern(tmp_path):
  """Both digits entries from scratch, as `python -m diffusion.reproduce` runs them."""
  ok, result = runner.run("digits_objectives", "cpu", str(tmp_path / "objectives"))
  assert ok, result["rows"]
  ok, result = runner.run("ddim_steps", "cpu", str(tmp_path / "ddim"))
  assert ok, result["rows"]
  assert result["pictures"] == ["ddim_steps.png"]


@pytest.mark.slow
@pytest.mark.skipif(not LONG, reason="trains NCSN's RefineNet and the U-Net on digits and "
                    "samples 297 digits from each with 1,000 Langevin steps (~15 min on 2 "
                    "CPU cores, 26 when shared; beyond the suite's budget); run with "
                    "DIFFUSION_LONG_TESTS=1")
def test_ncsn_refinenet_against_the_unet_on_digits(tmp_path):
  """The entry from scratch: both networks trained with one budget, both judged."""
  ok, result = runner.run("ncsn_digits_refinenet", "cpu", str(tmp_path))
  assert ok, result["rows"]
  _check_result(str(tmp_path), "ncsn_digits_refinenet")
  assert sorted(result["pictures"]) == ["ncsn_fig4_refinenet.png", "ncsn_fig5_refinenet.png",
                                        "ncsn_fig5_unet.png"]
  refinenet, unet = result["details"]["refinenet"], result["details"]["unet"]
  assert (refinenet["params"], unet["params"]) == (518_817, 651_041)
  assert refinenet["step"] == unet["step"] == 2000
  m = result["measured"]
  assert m["cfid_refinenet_over_unet"] == pytest.approx(m["cfid_refinenet"] / m["cfid_unet"])


@pytest.mark.slow
@pytest.mark.needs_shared_data
def test_ncsnv2_techniques_on_mnist(shared_data, tmp_path, monkeypatch):
  from diffusion.data import prepare_dataset  # pylint: disable=import-outside-toplevel
  data_dir = tmp_path / "tfds"
  prepare_dataset("mnist", manual_dir=str(shared_data / "mnist"), data_dir=str(data_dir))
  b = BASELINES["ncsnv2_mnist_sigmas"]
  budget = b.tiers["cpu"]
  out = b.experiment(
      b, type(budget)(dict(budget.overrides, **{"data.tfds_data_dir": str(data_dir)})),
      str(tmp_path), 0)
  assert abs(out.measured["sigma_1"] - 16.8758) < 1e-4
  assert out.measured["num_levels"] == 101


# ---- the classifier metric --------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_classifier(tmp_path_factory):
  os.environ["DIFFUSION_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
  from diffusion import families  # pylint: disable=import-outside-toplevel
  from diffusion import evals  # pylint: disable=import-outside-toplevel
  from configs.ddpm import digits  # pylint: disable=import-outside-toplevel
  config = digits.get_config()
  config.eval.classifier_fid.num_samples = 297
  family = families.make_family(config)
  ev = evals.make_evaluators(family, str(tmp_path_factory.mktemp("w")),
                                  ["classifier_fid"])[0]
  ev._setup()  # pylint: disable=protected-access
  return ev


def test_classifier_is_accurate_and_cached(digits_classifier, tmp_path):
  from diffusion.evals import classifier  # pylint: disable=import-outside-toplevel
  assert digits_classifier.real["classifier_accuracy"] > 0.9
  files = os.listdir(os.environ["DIFFUSION_CACHE_DIR"])
  assert len(files) == 1 and files[0].startswith("classifier_digits_8px_")
  net = digits_classifier._net  # pylint: disable=protected-access
  again = classifier.load_or_train("digits_8px", {}, {})       # from the cache: no data needed
  assert again.test_accuracy == net.test_accuracy


def test_classifier_metric_separates_data_from_noise(digits_classifier):
  """Held-out digits score near the floor; noise and blanks far above it."""
  from diffusion.data import make_source  # pylint: disable=import-outside-toplevel
  ev = digits_classifier
  test = make_source(ev.family.config.data, split="test").arrays["images"]
  real = ev.score(test)
  floor = real["eval/cfid_floor"]
  assert real["eval/cfid"] == pytest.approx(floor, rel=1e-9)
  train = make_source(ev.family.config.data).arrays["images"][:297]
  assert ev.score(train)["eval/cfid"] < 3 * floor + 1.0
  rng = np.random.default_rng(0)
  noise = ev.score(rng.integers(0, 256, test.shape).astype(np.uint8))
  assert noise["eval/cfid"] > 8 * (floor + 1.0)       # measured: 691 vs a floor of 65
  blank = ev.score(np.zeros_like(test))
  assert blank["eval/cfid"] > 8 * (floor + 1.0) and blank["eval/classes"] <= 1
  # Calibrated (temperature fitted on the test split): a real digit is "confident" about as
  # often as the classifier is right (measured 76.8% at accuracy 93.3%), noise almost never.
  assert 0.7 < real["eval/confident"] <= real["eval/classifier_accuracy"]
  assert real["eval/classes"] == 10 and real["eval/classifier_temperature"] > 1.0
  assert noise["eval/confident"] < 0.3


def test_classifier_frechet_distance_against_float64():
  """The evaluator's distance is the closed form on float64 feature statistics."""
  rng = np.random.default_rng(1)
  a = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
  b = rng.normal(size=(500, 6)) * 1.3 + 0.5
  mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
  mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
  # Tr((Σ1Σ2)^½) from the eigenvalues of Σ1^½ Σ2 Σ1^½ (symmetric, float64).
  w, v = np.linalg.eigh(s1)
  root = v @ np.diag(np.sqrt(np.maximum(w, 0))) @ v.T
  tr = np.sum(np.sqrt(np.maximum(np.linalg.eigvalsh(root @ s2 @ root), 0)))
  want = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr
  got = metrics.frechet_distance(*metrics.feature_statistics(a),
                                 *metrics.feature_statistics(b))
  assert got == pytest.approx(want, rel=1e-8)


# ---- fidelity corrections ---------------------------------------------------------------------


def _improved_diffusion_space_timesteps(num_timesteps, section_counts):
  """improved-diffusion respace.py's rule, written out again from its description."""
  size_per = num_timesteps // len(section_counts)
  extra = num_timesteps % len(section_counts)
  start_idx, all_steps = 0, []
  for i, section_count in enumerate(section_counts):
    size = size_per + (1 if i < extra else 0)
    frac_stride = 1 if section_count <= 1 else (size - 1) / (section_count - 1)
    cur_idx = 0.0
    for _ in range(section_count):
      all_steps.append(start_idx + round(cur_idx))
      cur_idx += frac_stride
    start_idx += size
  return sorted(set(all_steps))


def test_space_timesteps_matches_improved_diffusion_for_every_count():
  for count in range(1, 1001):
    assert list(samplers.space_timesteps(1000, str(count))) == \
        _improved_diffusion_space_timesteps(1000, [count]), count
  kept = samplers.space_timesteps(1000, "21")   # the .5 tie of the issue: 10 x 49.95 accumulates
  assert 499 in kept and 500 not in kept        # to just under 499.5; round(10 * 49.95) gives 500
  for counts in ("10,20,30", "7,3", "100,1"):
    assert list(samplers.space_timesteps(1000, counts)) == _improved_diffusion_space_timesteps(
        1000, [int(c) for c in counts.split(",")])


def test_respacing_is_float64_accurate():
  p = diffusion.make_process({"variant": "ddpm"})
  kept = samplers.space_timesteps(1000, "21")
  betas64 = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
  ac = np.cumprod(1 - betas64)[kept]
  want = 1 - ac / np.append(1.0, ac[:-1])
  got = np.asarray(p.respace(kept).betas, np.float64)
  assert np.max(np.abs(got / want - 1)) < 2e-6     # float32 storage of β; was 6.5e-4


def test_kept_evaluations_are_reused_only_for_the_same_protocol(tmp_path):
  """A rerun reads a kept evaluation back; another sampler or step measures afresh."""
  from diffusion.reproduce import common  # pylint: disable=import-outside-toplevel
  config = common.load_config_file("configs/ddpm/quickstart.py")
  calls = []

  def measure():
    calls.append(1)
    return {"eval/cfid": float(len(calls))}

  def once(cfg, step=100):
    return common.measured_once(str(tmp_path), "q", cfg, step, 0, measure)

  assert once(config) == {"eval/cfid": 1.0}
  assert once(config) == {"eval/cfid": 1.0} and len(calls) == 1     # read back
  ddim10 = common.with_sampling(config, num_steps=10)
  assert once(ddim10) == {"eval/cfid": 2.0}                          # another protocol
  assert once(config, step=200) == {"eval/cfid": 3.0}                # another checkpoint
  assert len(list(tmp_path.glob("q_*.json"))) == 3


def test_group_norm_is_two_pass():
  from diffusion.models.layers import GroupNorm  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(2)
  x = (100.0 + rng.normal(size=(2, 4, 4, 64))).astype(np.float32)   # mean/std ≈ 100
  gn = GroupNorm(num_groups=32)
  y = np.asarray(gn.apply(gn.init(jax.random.PRNGKey(0), x), x), np.float64)
  g = x.astype(np.float64).reshape(2, 4, 4, 32, 2)
  want = ((g - g.mean((1, 2, 4), keepdims=True)) /
          np.sqrt(g.var((1, 2, 4), keepdims=True) + 1e-6)).reshape(x.shape)
  assert np.max(np.abs(y - want)) < 2e-4


def test_group_norm_gradients_match_the_closed_form():
  """Forward with learned scale/bias and the input gradient against float64 numpy:
  dx = rstd (dx̂ − mean(dx̂) − x̂ mean(dx̂ x̂)) per (example, group), dx̂ = dy scale."""
  from diffusion.models.layers import GroupNorm  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(3)
  x = (3.0 * rng.normal(size=(2, 5, 3, 64)) + 1.0).astype(np.float32)
  dy = rng.normal(size=x.shape).astype(np.float32)
  scale = rng.uniform(0.5, 1.5, 64).astype(np.float32)
  bias = rng.normal(size=64).astype(np.float32)
  gn = GroupNorm(num_groups=16)
  params = {"params": {"scale": scale, "bias": bias}}
  y, vjp = jax.vjp(lambda v: gn.apply(params, v), x)
  dx = np.asarray(vjp(dy)[0], np.float64)
  g = x.astype(np.float64).reshape(2, 5, 3, 16, 4)
  axes = (1, 2, 4)
  rstd = 1.0 / np.sqrt(g.var(axes, keepdims=True) + 1e-6)
  xhat = (g - g.mean(axes, keepdims=True)) * rstd
  np.testing.assert_allclose(np.asarray(y), xhat.reshape(x.shape) * scale + bias, atol=2e-5)
  dxhat = (dy.astype(np.float64) * scale).reshape(g.shape)
  want = rstd * (dxhat - dxhat.mean(axes, keepdims=True)
                 - xhat * (dxhat * xhat).mean(axes, keepdims=True))
  np.testing.assert_allclose(dx, want.reshape(x.shape), atol=2e-5)


def test_ncsn_networks_see_2x_minus_1_without_dropout():
  from configs.ncsn import cifar10, digits  # pylint: disable=import-outside-toplevel
  from diffusion import make_eps_fn  # pylint: disable=import-outside-toplevel
  for get in (cifar10.get_config, digits.get_config):
    m = parse_config(get()).model
    assert m.rescale_inputs and m.dropout == 0.0
  seen = []

  class Probe:
    def apply(self, variables, x, cond, train=False, rngs=None):
      del variables, cond, train, rngs
      seen.append(np.asarray(x))
      return jnp.zeros_like(x)

  ve = diffusion.make_process({"variant": "ncsn"})
  eps_fn = make_eps_fn(Probe(), {}, ve, {"rescale_inputs": True})
  eps_fn(jnp.full((2, 3), 0.25), jnp.array([0, 1]))
  np.testing.assert_allclose(seen[0], -0.5)


def test_samples_are_truncated_like_improved_diffusion_and_score_sde():
  x = np.array([-1.0, -0.999, 0.0, 0.3, 0.999, 1.0, 1.2])
  truncated = transforms.to_uint8(x, centered=True, quantize="truncate")
  np.testing.assert_array_equal(truncated, np.clip((x + 1) * 127.5, 0, 255).astype(np.uint8))
  rounded = transforms.to_uint8(x, centered=True, quantize="round")
  np.testing.assert_array_equal(rounded, np.floor(np.clip((x + 1) / 2, 0, 1) * 255 + 0.5))
  assert SamplingConfig().quantize == "truncate"


def test_ve_ancestral_variances_are_score_sde_predictors():
  """fixedlarge = score_sde's reverse-diffusion step variance σ_i² − σ_{i−1}²; fixedsmall
  = its ancestral-sampling predictor's σ_{i−1}²(σ_i² − σ_{i−1}²)/σ_i²; the mean of both is
  x + (σ_i² − σ_{i−1}²)·score."""
  ve = diffusion.make_process({"variant": "ncsn", "num_timesteps": 10})
  s = np.geomspace(0.01, 1.0, 10)
  t = jnp.arange(1, 10)
  np.testing.assert_allclose(np.exp(np.asarray(ve.p_log_variance(t, "fixedlarge"))),
                             s[1:] ** 2 - s[:-1] ** 2, rtol=1e-5)
  np.testing.assert_allclose(np.exp(np.asarray(ve.p_log_variance(t, "fixedsmall"))),
                             s[:-1] ** 2 * (s[1:] ** 2 - s[:-1] ** 2) / s[1:] ** 2, rtol=1e-5)
  x = jnp.asarray(np.random.default_rng(3).normal(size=(9, 4)), jnp.float32)
  eps = jnp.asarray(np.random.default_rng(4).normal(size=(9, 4)), jnp.float32)
  mean, _, _ = ve.p_mean_variance(x, t, eps, "fixedlarge")
  score = -eps / s[1:, None]
  np.testing.assert_allclose(mean, x + (s[1:, None] ** 2 - s[:-1, None] ** 2) * score,
                             rtol=1e-4, atol=1e-5)


def test_dpm_configs_do_not_clip_gradients():
  import importlib  # pylint: disable=import-outside-toplevel
  for name in ("cifar10", "digits", "swiss_roll", "mnist"):
    config = importlib.import_module(f"configs.dpm.{name}").get_config()
    assert config.optim.grad_clip == 0.0, name


def test_a_band_that_excludes_the_papers_value_says_why_in_the_readme_table():
  from diffusion.reproduce.schema import Metric  # pylint: disable=import-outside-toplevel
  assert Metric("k", 2.35, (-2.69, -1.19), "w", "p").excludes_paper
  assert not Metric("k", -1.19, (-2.69, -1.19), "w", "p").excludes_paper   # bands are closed
  assert not Metric("k", "K ≤ log p", (0.0, 1.5), "w", "p").excludes_paper  # a phrase
  table = runner.readme_table()
  roll = next(line for line in table.splitlines() if line.startswith("| `dpm_swiss_roll` |"))
  assert ("K_bits: 2.35 → [-2.69, -1.19] (band excludes the paper's value: the paper's roll "
          "is not published and K is bounded by the roll's own log-likelihood); "
          "gap_to_exact_bits: K ≤ log p → [0, 1.5] |") in roll
  excluded = [m for b in BASELINES.values() for m in b.metrics if m.excludes_paper]
  assert table.count("band excludes the paper's value") == len(excluded) >= 1


def test_fig3_panels_name_the_seed_shown_and_the_mean_the_table_reports(tmp_path, monkeypatch):
  """Issue 23: the points are the last seed's; the title gives its share and the mean."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  from diffusion.reproduce.papers import ncsn  # pylint: disable=import-outside-toplevel
  figures = []
  monkeypatch.setattr(plt, "close", figures.append)
  points = np.array([[5.0, 5.0]] * 3 + [[-5.0, -5.0]])          # 0.75 nearer (5, 5)
  shares = {"points": {"plain": points, "annealed": points}, "plain": 0.5, "plain_se": 0.01,
            "annealed": 0.774, "annealed_se": 0.008}
  ncsn._plot_langevin(str(tmp_path / "fig3.png"), shares, 10, "NCSN Fig. 3")
  plain, annealed = (ax.get_title() for ax in figures[0].axes)
  assert annealed.endswith("seed 10 of 10: 0.750 at (5, 5); mean of 10 seeds 0.774 ± 0.008")
  assert plain.endswith("seed 10 of 10: 0.750 at (5, 5); mean of 10 seeds 0.500 ± 0.010")


def test_readme_reproducing_section_is_the_registry_table():
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    readme = f.read()
  assert runner.readme_table() in readme, "regenerate it: runner.readme_table()"


@pytest.mark.parametrize("name", ["ddpm_cifar10_weights", "ddim_cifar10_weights",
                                  "fast_samplers_cifar10_weights", "ncsnv2_cifar10_weights"])
def test_weights_entries_fail_fast_in_one_line_without_their_inputs(name, tmp_path):
  """No --weights, a --weights folder without a run, no Inception weights: one line each,
  before anything is sampled; and the weights tier is refused on a CPU without --force_tier."""
  from diffusion.errors import ConfigError  # pylint: disable=import-outside-toplevel
  with pytest.raises(ConfigError, match="--force_tier"):
    runner.run(name, "weights", str(tmp_path / "a"))
  with pytest.raises(ConfigError, match="pretrained import") as err:
    runner.run(name, "weights", str(tmp_path / "b"), force_tier=True)
  assert "\n" not in str(err.value)
  with pytest.raises(ConfigError, match="no config.json"):
    runner.run(name, "weights", str(tmp_path / "c"), force_tier=True, weights=str(tmp_path))
  run_dir = tmp_path / "imported"
  run_dir.mkdir()
  (run_dir / "config.json").write_text("{}")
  with pytest.raises(ConfigError, match="--inception_weights"):
    runner.run(name, "weights", str(tmp_path / "d"), force_tier=True, weights=str(run_dir))
  assert not (tmp_path / "d" / "results.json").exists()


def test_weights_flags_are_refused_by_entries_that_train(tmp_path):
  from diffusion.errors import ConfigError  # pylint: disable=import-outside-toplevel
  with pytest.raises(ConfigError, match="trains its own model"):
    runner.run("ncsn_fig3_exact", "cpu", str(tmp_path), weights=str(tmp_path))


def test_weights_protocols_are_valid_configs():
  """Every protocol's overrides apply to the release's config and validate (DDPM CIFAR-10)."""
  from configs.ddpm import cifar10  # pylint: disable=import-outside-toplevel
  from diffusion.config import checks  # pylint: disable=import-outside-toplevel
  from diffusion.sweeps.grid import apply_overrides  # pylint: disable=import-outside-toplevel
  for name in ("ddpm_cifar10_weights", "ddim_cifar10_weights", "fast_samplers_cifar10_weights"):
    b = BASELINES[name]
    covered = set()
    for protocol in b.tiers["weights"].overrides["protocols"].values():
      changes = {f"sampling.{k}": v for k, v in protocol.get("sampling", {}).items()}
      changes.update({k: v for k, v in protocol.items() if "." in k})
      checks.validate(apply_overrides(cifar10.get_config(), changes))
      covered |= set(protocol["metrics"])
    assert covered == {m.name for m in b.metrics}, name

"""Post-hoc EMA through training (EDM2, Karras et al. 2024, §3): the profiles the loop
tracks, the snapshots it writes, their reconstruction through ``diffusion.load`` and
sample.py, resume, populations and the one-line errors.

One toy run (the 2-D mixture's MLP) checkpoints every step, so the whole parameter
trajectory θ_1..θ_T is on disk: every post-hoc quantity is checked against float64 numpy
sums over that trajectory, written here from the paper's weights (independent of the
loop's float32 recursion and of the least-squares solver's code path through files)."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

import diffusion
from diffusion import families
from diffusion.config import checks, parse_config
from diffusion.errors import ConfigError
from diffusion.io import checkpoints, phema_snapshots
from diffusion.paths import REPO
from diffusion.train import optim, phema
from diffusion.train.loop import initial_state, train
from diffusion.train.population import train_population

TRACKED = (0.05, 0.1)
STEPS, EVERY = 48, 4


def toy(**overrides):
  """configs/ddpm/toy_mixture.py with post-hoc EMA on, shortened (overrides: dotted keys)."""
  from configs.ddpm import toy_mixture  # pylint: disable=import-outside-toplevel
  config = toy_mixture.get_config()
  values = {"training.num_train_steps": STEPS, "training.log_every": 8,
            "training.checkpoint_every": 1, "training.keep_checkpoints": STEPS + 1,
            "training.phema_std_rel": TRACKED, "training.phema_every": EVERY,
            "diffusion.num_timesteps": 20, **overrides}
  for key, value in values.items():
    section, name = key.split(".")
    config[section][name] = value
  return config


def states(workdir, config):
  """{step: TrainState as numpy} of every checkpoint of a run."""
  family = families.make_family(checks.validate(config))
  target = jax.eval_shape(lambda: initial_state(family, optim.make_optimizer(family.config.optim)))
  ckpt = checkpoints.Checkpointer(str(workdir))
  try:
    return {s: jax.tree.map(np.asarray, ckpt.restore(s, target)) for s in ckpt.steps()}
  finally:
    ckpt.close()


def flat(tree):
  """A parameter tree as one float64 vector."""
  return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """(workdir, config, trajectory [T, P] float64 of θ_1..θ_T, {step: state})."""
  workdir = tmp_path_factory.mktemp("phema") / "run"
  config = toy()
  train(config, str(workdir), progress=False)
  by_step = states(workdir, config)
  assert sorted(by_step) == list(range(1, STEPS + 1))
  trajectory = np.stack([flat(by_step[s].params) for s in range(1, STEPS + 1)])
  return workdir, config, trajectory, by_step


def test_the_loop_tracks_exact_power_emas_and_snapshots_them(run):
  """Each tracked profile in the train state after t steps is Σ_τ w_τ θ_τ with EDM2's
  weights (τ^(γ+1) − (τ−1)^(γ+1)) / t^(γ+1) (the β_t recursion of eq. 127, started at
  t = 1), in float64 over the recorded trajectory; the snapshot of step s holds the state's
  profiles at s, bit for bit; one snapshot every phema_every steps."""
  workdir, _, trajectory, by_step = run
  gammas = phema.std_to_gamma(np.array(TRACKED))
  for t in (1, 2, 7, 24, STEPS):
    for profile, gamma in zip(by_step[t].phema_params, gammas):
      want = phema.step_weights(t, gamma) @ trajectory[:t]
      got = flat(profile)
      assert np.max(np.abs(got - want)) <= 2e-6 * np.max(np.abs(want)), t
  # The ordinary EMA is untouched: copy at step 1, then decay 0.9 (TF DDPM).
  want = phema.ema_decay_weights(0.9, STEPS) @ trajectory
  np.testing.assert_allclose(flat(by_step[STEPS].ema_params), want, rtol=0, atol=1e-5)
  files = phema_snapshots.list_snapshots(workdir)
  assert [s for s, _ in files] == list(range(EVERY, STEPS + 1, EVERY))
  target = families.make_family(checks.validate(toy())).abstract_params()
  for s, path in files:
    assert phema_snapshots.read_header(path) == (s, TRACKED)
    for (std, stored), profile in zip(phema_snapshots.read_profiles(path, target),
                                      by_step[s].phema_params):
      np.testing.assert_array_equal(flat(stored), flat(profile))


@pytest.mark.parametrize("std", TRACKED)
def test_load_at_a_tracked_length_is_that_profile(run, std):
  """The issue's check: diffusion.load(DIR, ema_std_rel=<tracked>) equals the profile the
  training state tracked, to 1e-4 relative (measured ~1e-7), at the last step and at an
  earlier snapshot; run.step and run.ema_std_rel say what the parameters are."""
  workdir, _, _, by_step = run
  i = TRACKED.index(std)
  for step in (-1, 24):
    loaded = diffusion.load(str(workdir), step=step, ema_std_rel=std)
    want = flat(by_step[STEPS if step < 0 else step].phema_params[i])
    got = flat(loaded.params)
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))
    assert loaded.step == (STEPS if step < 0 else step) and loaded.ema_std_rel == std
  assert "ema_std_rel=0.05" in repr(diffusion.load(str(workdir), ema_std_rel=0.05))
  default = diffusion.load(str(workdir))
  assert default.ema_std_rel is None and default.step == STEPS


@pytest.mark.parametrize("std", [0.07, 0.04])
def test_load_at_an_untracked_length_against_float64(run, std):
  """σ_rel between and beside the tracked pair: (1) the reconstruction is exactly the
  least-squares weights applied to the snapshots, i.e. Σ_τ ŵ_τ θ_τ with ŵ = Σ_i x_i w^(i)
  in float64 over the trajectory (files, steps, γ and weights all right); (2) it is the
  exact power EMA of that σ_rel to within what the profiles' mismatch allows,
  |Σ (ŵ − w)(θ_τ − θ_T)| ≤ Σ|ŵ − w| max|θ_τ − θ_T| (both weight sets sum to one)."""
  workdir, _, trajectory, _ = run
  got = flat(diffusion.load(str(workdir), ema_std_rel=std).params)
  snap_steps = [s for s in range(EVERY, STEPS + 1, EVERY) for _ in TRACKED]
  snap_stds = [d for _ in range(EVERY, STEPS + 1, EVERY) for d in TRACKED]
  x = phema.solve_coefficients(snap_steps, snap_stds, STEPS, std)[:, 0]
  w_hat = np.zeros(STEPS)
  for xi, s, d in zip(x, snap_steps, snap_stds):
    w_hat[:s] += xi * phema.step_weights(s, float(phema.std_to_gamma(d)))
  scale = np.max(np.abs(trajectory))
  assert np.max(np.abs(got - w_hat @ trajectory)) <= 1e-5 * scale
  exact = phema.step_weights(STEPS, float(phema.std_to_gamma(std))) @ trajectory
  bound = np.sum(np.abs(w_hat - phema.step_weights(STEPS, float(phema.std_to_gamma(std))))) \
      * np.max(np.abs(trajectory - trajectory[-1]))
  err = np.max(np.abs(got - exact))
  assert err <= bound + 1e-5 * scale
  assert bound < 0.05 * np.max(np.abs(trajectory - trajectory[-1]))  # the bound says something
  # A longer EMA is a different average: it differs from the tracked ones by far more.
  assert np.max(np.abs(got - flat(diffusion.load(str(workdir), ema_std_rel=0.1).params))) \
      > 10 * (err + 1e-7)


def test_a_run_without_phema_is_what_it_was(tmp_path):
  """phema_std_rel=() (the default): no phema/ folder, a checkpoint with exactly the items
  and arrays of before, an empty tuple of profiles; load refuses --ema_std_rel in one line."""
  config = toy(**{"training.phema_std_rel": (), "training.phema_every": 0,
                  "training.num_train_steps": 4, "training.checkpoint_every": 4})
  train(config, str(tmp_path / "plain"), progress=False)
  assert not os.path.exists(tmp_path / "plain" / "phema")
  ckpt = checkpoints.Checkpointer(str(tmp_path / "plain"), read_only=True)
  meta = ckpt._manager.item_metadata(4)  # pylint: disable=protected-access
  ckpt.close()
  assert set(meta["state"].keys()) == {"step", "params", "opt_state", "hparams",
                                       "first_nonfinite_step"}
  assert states(tmp_path / "plain", config)[4].phema_params == ()
  with pytest.raises(ConfigError, match="trained without them"):
    diffusion.load(str(tmp_path / "plain"), ema_std_rel=0.05)


def _read_snapshots(workdir):
  return {s: dict(np.load(path)) for s, path in phema_snapshots.list_snapshots(workdir)}


def test_resume_continues_the_profiles_bit_exactly(tmp_path):
  """8 steps then a resume to 16 ends with the state (parameters, EMA, profiles) and the
  snapshots of a straight 16-step run, bit for bit. A run that loses its newest checkpoint
  (killed after writing snapshot 12, before checkpoint 12) resumes from 8: snapshot 12 is
  set aside, not deleted, and written again identically."""
  cfg = dict(**{"training.num_train_steps": 16, "training.checkpoint_every": 4,
                "training.keep_checkpoints": 10})
  train(toy(**cfg), str(tmp_path / "straight"), progress=False)
  train(toy(**dict(cfg, **{"training.num_train_steps": 8})), str(tmp_path / "resumed"),
        progress=False)
  train(toy(**cfg), str(tmp_path / "resumed"), progress=False)
  a, b = states(tmp_path / "straight", toy(**cfg)), states(tmp_path / "resumed", toy(**cfg))
  for x, y in zip(jax.tree.leaves(a[16]), jax.tree.leaves(b[16])):
    np.testing.assert_array_equal(x, y)
  sa, sb = _read_snapshots(tmp_path / "straight"), _read_snapshots(tmp_path / "resumed")
  assert sorted(sa) == sorted(sb) == [4, 8, 12, 16]
  for s in sa:
    assert sa[s].keys() == sb[s].keys()
    for k in sa[s]:
      np.testing.assert_array_equal(sa[s][k], sb[s][k])
  # The newest checkpoints lost: 12 and 16 go, their snapshots are retrained from 8.
  for s in (12, 16):
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / str(s))
  train(toy(**cfg), str(tmp_path / "resumed"), progress=False)
  aside = tmp_path / "resumed" / "phema" / "retrained_from_8"
  assert sorted(os.listdir(aside)) == ["phema_00000012.npz", "phema_00000016.npz"]
  again = _read_snapshots(tmp_path / "resumed")
  for s in (12, 16):
    for k in sa[s]:
      np.testing.assert_array_equal(sa[s][k], again[s][k])
      np.testing.assert_array_equal(sa[s][k], np.load(aside / f"phema_{s:08d}.npz")[k])


def test_retention_keeps_the_newest_snapshots_and_ignores_keep_checkpoints(tmp_path):
  """phema_keep=3 keeps the three newest snapshots; keep_checkpoints=1 removes checkpoints
  only."""
  train(toy(**{"training.num_train_steps": 20, "training.checkpoint_every": 4,
               "training.keep_checkpoints": 1, "training.phema_keep": 3}),
        str(tmp_path / "r"), progress=False)
  assert [s for s, _ in phema_snapshots.list_snapshots(tmp_path / "r")] == [12, 16, 20]
  assert os.listdir(tmp_path / "r" / "checkpoints") == ["20"]
  train(toy(**{"training.num_train_steps": 20, "training.checkpoint_every": 4,
               "training.keep_checkpoints": 1}), str(tmp_path / "all"), progress=False)
  assert len(phema_snapshots.list_snapshots(tmp_path / "all")) == 5


def test_a_population_tracks_profiles_per_member(run, tmp_path):
  """Two members (lr 1e-3, the fixture's run, and 3e-3) trained as one vmapped program:
  each writes its own snapshots; the first's profiles equal the single run's to float32
  rounding, the second's differ."""
  single_dir, _, _, by_step = run
  configs = [toy(**{"optim.lr": lr, "training.checkpoint_every": STEPS}) for lr in (1e-3, 3e-3)]
  dirs = [str(tmp_path / "lr1"), str(tmp_path / "lr3")]
  train_population(configs, dirs, progress=False)
  target = families.make_family(checks.validate(configs[0])).abstract_params()
  last = {d: phema_snapshots.list_snapshots(d)[-1] for d in dirs}
  assert all(s == STEPS for s, _ in last.values())
  member = [flat(p) for _, p in phema_snapshots.read_profiles(last[dirs[0]][1], target)]
  other = [flat(p) for _, p in phema_snapshots.read_profiles(last[dirs[1]][1], target)]
  for i, profile in enumerate(by_step[STEPS].phema_params):
    np.testing.assert_allclose(member[i], flat(profile), rtol=0, atol=2e-5)
    assert np.max(np.abs(other[i] - flat(profile))) > 1e-3
  rebuilt = diffusion.load(dirs[1], ema_std_rel=0.07)
  assert rebuilt.step == STEPS and rebuilt.ema_std_rel == 0.07
  del single_dir


def test_bad_phema_input_is_one_line(run, tmp_path):
  workdir, config, _, _ = run
  for bad, match in [({"phema_std_rel": (0.3,)}, "training.phema_std_rel"),
                     ({"phema_std_rel": (0.05, 0.05)}, "distinct"),
                     ({"phema_std_rel": (), "phema_keep": 2}, "without post-hoc EMA"),
                     ({"phema_every": 3, "steps_per_call": 2}, "multiple of")]:
    with pytest.raises(ConfigError, match=match):
      parse_config({"training": bad})
  # A resume may not change the profiles (nothing is written).
  shutil.copytree(workdir, tmp_path / "copy")
  before = sorted(os.listdir(tmp_path / "copy" / "phema"))
  with pytest.raises(ConfigError, match=r"cannot be added, removed or changed on resume"):
    train(toy(**{"training.phema_std_rel": (0.05,), "training.num_train_steps": STEPS + 4}),
          str(tmp_path / "copy"), progress=False)
  assert sorted(os.listdir(tmp_path / "copy" / "phema")) == before
  with pytest.raises(ConfigError, match=r"cannot be reconstructed .* they reconstruct σ_rel in"):
    diffusion.load(str(workdir), ema_std_rel=0.002)
  with pytest.raises(ConfigError, match=r"not a relative EMA length"):
    diffusion.load(str(workdir), ema_std_rel=0.29)
  with pytest.raises(ConfigError, match=r"--checkpoint_step=5 has no post-hoc EMA snapshot"):
    diffusion.load(str(workdir), step=5, ema_std_rel=0.05)
  shutil.move(str(tmp_path / "copy" / "phema"), str(tmp_path / "moved"))
  with pytest.raises(ConfigError, match=r"no post-hoc EMA snapshots in .* yet"):
    diffusion.load(str(tmp_path / "copy"), ema_std_rel=0.05)
  del config


def _sample_cli(*args):
  return subprocess.run([sys.executable, os.path.join(REPO, "sample.py"), "--progress=false",
                         *args], capture_output=True, text=True, cwd=REPO)


def test_sample_py_draws_the_reconstruction_and_records_it(run, tmp_path):
  """sample.py --ema_std_rel=0.07 draws what diffusion.load(..., ema_std_rel=0.07).sample
  draws (the same parameters, the same seed), names its folder ``..._ema0.07_...`` and
  records σ_rel in meta.json; without the flag the checkpoint's EMA samples differ. Bad
  lengths are one line, exit 2."""
  workdir, _, _, _ = run
  proc = _sample_cli(f"--workdir={workdir}", "--num_samples=32", "--ema_std_rel=0.07",
                     "--sampler=ddim", "--steps=5", f"--output={tmp_path / 'post'}")
  assert proc.returncode == 0, proc.stderr
  meta = json.loads((tmp_path / "post" / "meta.json").read_text())
  assert meta["ema_std_rel"] == 0.07 and meta["checkpoint_step"] == STEPS
  assert meta["ema_snapshots"] == STEPS // EVERY and meta["checkpoint"].endswith("phema")
  drawn = np.load(tmp_path / "post" / "samples.npz")["arr_0"]
  want = diffusion.load(str(workdir), ema_std_rel=0.07).sample(32, seed=0, method="ddim",
                                                                 num_steps=5)
  np.testing.assert_allclose(drawn, want, rtol=0, atol=1e-5)
  plain = diffusion.load(str(workdir)).sample(32, seed=0, method="ddim", num_steps=5)
  assert np.max(np.abs(plain - want)) > 1e-3
  proc = _sample_cli(f"--workdir={workdir}", "--num_samples=4", "--ema_std_rel=0.07",
                     "--sampler=ddim", "--steps=5")
  assert proc.returncode == 0, proc.stderr
  assert [n for n in os.listdir(workdir) if n.startswith(f"samples_{STEPS}_ddim_s5")] == \
      [n for n in os.listdir(workdir) if "_ema0.07_seed0" in n] != []
  for flag, match in [("--ema_std_rel=0.5", "not a relative EMA length"),
                      ("--ema_std_rel=0.001", "cannot be reconstructed")]:
    proc = _sample_cli(f"--workdir={workdir}", "--num_samples=4", flag)
    assert proc.returncode == 2 and match in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: ")

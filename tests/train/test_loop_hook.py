"""The training loop's hook for searches (``on_log``): when it is called, with what, and
what a True answer does to a single run and to one member of a population."""

import glob
import json
import os

import pytest

from diffusion.train.loop import train
from diffusion.train.population import train_population


def toy(**overrides):
  """configs/ddpm/toy_mixture.py, 40 steps: logs every 10, held-out loss every 20."""
  from configs.ddpm import toy_mixture  # pylint: disable=import-outside-toplevel
  config = toy_mixture.get_config()
  config.training.num_train_steps = 40
  config.training.log_every = 10
  config.training.checkpoint_every = 40
  config.eval.heldout_loss.every = 20
  config.eval.heldout_loss.num_examples = 64
  config.eval.heldout_loss.batch_size = 64
  for key, value in overrides.items():
    section, field = key.split(".")
    config[section][field] = value
  return config


def rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def steps_saved(workdir):
  return sorted(int(os.path.basename(p)) for p in glob.glob(os.path.join(workdir, "checkpoints",
                                                                          "*"))
                if os.path.basename(p).isdigit())


def test_on_log_sees_each_logged_step_with_its_evaluations_and_can_stop_the_run(tmp_path):
  seen = []

  def on_log(step, scalars):
    seen.append((step, dict(scalars)))
    return False

  result = train(toy(), str(tmp_path / "a"), progress=False, on_log=on_log)
  assert result["step"] == 40 and "stopped" not in result
  assert [s for s, _ in seen] == [10, 20, 30, 40]
  # Training scalars at every log step; eval/* merged in at the evaluator's steps.
  assert all("loss" in sc and "lr" in sc for _, sc in seen)
  assert ["eval/heldout_loss" in sc for _, sc in seen] == [False, True, False, True]
  logged = {r["step"]: r for r in rows(str(tmp_path / "a")) if "eval/heldout_loss" in r}
  assert seen[1][1]["eval/heldout_loss"] == logged[20]["eval/heldout_loss"]
  assert seen[0][1]["loss"] == pytest.approx(
      next(r["loss"] for r in rows(str(tmp_path / "a")) if r["step"] == 10 and "loss" in r))

  # True at step 20: saved there, nothing after it; neither a failure nor an interruption.
  calls = []
  result = train(toy(), str(tmp_path / "b"), progress=False,
                 on_log=lambda step, sc: calls.append(step) or step == 20)
  assert result["step"] == 20 and result["stopped"] is True and "interrupted" not in result
  assert result["eval/heldout_loss"] > 0 and "loss" in result
  assert calls == [10, 20]
  assert steps_saved(str(tmp_path / "b")) == [20]
  assert max(r["step"] for r in rows(str(tmp_path / "b"))) == 20
  # The same command without a hook resumes the stopped run from its checkpoint.
  assert train(toy(), str(tmp_path / "b"), progress=False)["step"] == 40


def test_in_a_population_on_log_stops_one_member_and_the_loop_ends_with_the_last(tmp_path):
  configs = [toy(**{"optim.lr": lr}) for lr in (1e-3, 2e-3, 4e-3)]
  dirs = [str(tmp_path / f"m{i}") for i in range(3)]
  seen = []

  def on_log(member, step, scalars):
    seen.append((member, step))
    return (member, step) in ((1, 20), (0, 30))

  results = train_population(configs, dirs, names=["a", "b", "c"], progress=False,
                             on_log=on_log)
  assert results[0]["step"] == 30 and results[0]["stopped"]
  assert results[1]["step"] == 20 and results[1]["stopped"]
  assert results[2]["step"] == 40 and "stopped" not in results[2]
  # A stopped member reports, logs and saves no more.
  assert sorted(s for m, s in seen if m == 1) == [10, 20]
  assert sorted(s for m, s in seen if m == 0) == [10, 20, 30]
  assert sorted(s for m, s in seen if m == 2) == [10, 20, 30, 40]
  assert [steps_saved(d) for d in dirs] == [[30], [20], [40]]
  assert [max(r["step"] for r in rows(d)) for d in dirs] == [30, 20, 40]

  # Every member stopped: the loop ends there (no step after the last stop).
  dirs = [str(tmp_path / f"n{i}") for i in range(2)]
  results = train_population(configs[:2], dirs, progress=False,
                             on_log=lambda member, step, sc: step == 10)
  assert [r["step"] for r in results] == [10, 10] and all(r["stopped"] for r in results)

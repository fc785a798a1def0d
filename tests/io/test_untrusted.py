"""The one boundary for outside files (diffusion/io/untrusted.py), and fuzz tests of the
readers of what a run, a sweep or a reproduction leaves on disk.

The fuzz tests mutate a valid file a few hundred times (``Mutations`` in
tests/conftest.py) and read each mutant as the commands do, in-process: every outcome is
a success the command can use or one ConfigError line naming the file; never another
exception, never a hang. Counts are printed (``-s``).
"""

import json
import os
import pathlib
import shutil

import jax
import numpy as np
import pytest

import diffusion
from configs.ddpm import toy_mixture
from diffusion import families, paths
from diffusion.config import checks, files
from diffusion.errors import ConfigError
from diffusion.io import metric_writers, untrusted
from diffusion.pretrained import importer
from diffusion.reproduce import runner
from diffusion.sweeps import ledger, report
from tests.conftest import Tally

REPO = pathlib.Path(paths.REPO)


# ---- the boundary itself -------------------------------------------------------------


def test_get_names_the_file_the_field_what_was_found_and_what_was_expected():
  tree = {"model": {"num_classes": "abc", "sigma": 2.0}, "data": [1, 2]}
  cases = [("model.num_classes", untrusted.integer(1, 10),
            "f.yml: model.num_classes is 'abc' (text); expected an integer in [1, 10]."),
           ("model.missing", untrusted.number(positive=True),
            "f.yml: model.missing is missing; expected a positive finite number."),
           ("data.dataset", untrusted.text(),
            "f.yml: data is [1, 2] (a list of 2); expected a mapping (key: value)."),
           ("model.sigma", untrusted.integer(),
            "f.yml: model.sigma is 2.0; expected an integer.")]
  for dotted, expect, message in cases:
    with pytest.raises(ConfigError) as e:
      untrusted.get(tree, dotted, "f.yml", expect)
    assert str(e.value) == message
  assert untrusted.get(tree, "model.sigma", "f.yml", untrusted.number()) == 2.0
  assert untrusted.get(tree, "model.other", "f.yml", untrusted.number(), 7) == 7


@pytest.mark.parametrize("value, expect, ok", [
    (True, untrusted.integer(), False), (3, untrusted.integer(0, 3), True),
    (4, untrusted.integer(0, 3), False), (float("nan"), untrusted.number(), False),
    (float("inf"), untrusted.number(), False), (1e300, untrusted.number(), True),
    (0.0, untrusted.number(positive=True), False), ("", untrusted.text(), True),
    ("x", untrusted.text(("a", "b")), False), (None, untrusted.optional(untrusted.text()), True),
    ([1, 2.5], untrusted.numbers(), True), ([1, "2"], untrusted.numbers(), False),
    ([1, True], untrusted.numbers(), False), ([1], untrusted.numbers(2), False),
    (1, untrusted.BOOLEAN, False), ({}, untrusted.MAPPING, True)])
def test_expectations(value, expect, ok):
  assert expect.test(value) is ok


def test_describe_is_short_and_says_the_kind():
  assert untrusted.describe("abc") == "'abc' (text)"
  assert untrusted.describe("") == "'' (empty text)"
  assert untrusted.describe(True) == "true (a boolean)"
  assert untrusted.describe(None) == "null (nothing)"
  assert untrusted.describe(float("nan")) == "nan"
  deep = [[[[1]]]] * 10 ** 6   # neither the length nor the depth is spelled out
  assert untrusted.describe(deep) == "[[[...]], [[...]], [[...]], ...] (a list of 1000000)"


def test_reading_turns_any_failure_into_one_line_and_lets_interrupts_through():
  with pytest.raises(ConfigError, match=r"^f.json: not a readable ledger \(KeyError: 'x'\); "
                                        r"move it away\.$"):
    with untrusted.reading("f.json", "ledger", fix="move it away"):
      raise KeyError("x")
  with pytest.raises(ConfigError) as e:   # the reader's own line, naming the file: kept
    with untrusted.reading("f.json", "ledger"):
      raise ValueError("f.json: two\nlines")
  assert str(e.value) == "f.json: two."
  with pytest.raises(KeyboardInterrupt):
    with untrusted.reading("f.json", "ledger"):
      raise KeyboardInterrupt
  with pytest.raises(ConfigError, match="nested too deeply"):
    with untrusted.reading("f.json", "ledger"):
      json.loads("[" * 100_000 + "]" * 100_000)


# ---- fuzz tests of the readers ---------------------------------------------------------


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
  """A toy DDPM run (MLP, 2-D mixture) at step 0: config.json and a checkpoint, written
  as train.py writes them."""
  workdir = tmp_path_factory.mktemp("toy") / "run"
  cfg = checks.validate(toy_mixture.get_config())
  family = families.make_family(cfg)
  params = family.init_params(jax.random.PRNGKey(0))
  importer.write_run(cfg, params, str(workdir), 0, {})
  return workdir


def _samples_finite(model) -> None:
  assert np.isfinite(model.sample(2, num_steps=2)).all()


def test_workdir_config_json(toy_run, tmp_path, mutations, time_limit):
  """A run's config.json: 300 mutations of its fields and 60 of its bytes, read by
  diffusion.load (a success restores the checkpoint; one of another network is refused
  in one line naming the checkpoint)."""
  run = tmp_path / "run"
  shutil.copytree(toy_run, run)
  path = run / "config.json"
  original_text = (toy_run / "config.json").read_text()
  original = json.loads(original_text)
  tally, m = Tally("workdir config.json"), mutations(40)
  for i in range(360):
    if i < 300:
      label, mutant = m.of_tree(original)
      path.write_text(json.dumps(mutant))
    else:
      label, data = m.of_bytes(original_text.encode())
      path.write_bytes(data)
    tally.run(label, lambda: diffusion.load(str(run)), _samples_finite, str(run), time_limit)
  tally.assert_clean(360)
  assert tally.counts["read"] > 10


def _sweep(folder: pathlib.Path) -> dict:
  """A grid sweep of two points, one done (with metrics and config.json), one pending."""
  points = []
  for i, status in enumerate(("done", "pending")):
    workdir = folder / f"lr={i}"
    if status == "done":
      workdir.mkdir(parents=True)
      (workdir / "config.json").write_text(json.dumps({"optim": {"lr": 0.001}}))
      (workdir / "metrics.jsonl").write_text(
          "".join(json.dumps({"step": s, "loss": 1.0 / s, "time": 1.0}) + "\n"
                  for s in (1, 2, 3)))
    points.append({"name": f"lr={i}", "overrides": {"optim.lr": 0.001 * (i + 1)},
                   "status": status, "error": None, "workdir": str(workdir),
                   "final": {"loss": 0.33} if status == "done" else {}, "best": {}})
  return {"config": "configs/ddpm/digits.py", "sweep": "optim.lr=0.001,0.002",
          "common_overrides": {}, "points": points}


def test_sweep_ledger(tmp_path, mutations, time_limit):
  """sweep.json: 300 mutations of its fields and 60 of its bytes, read by ``python -m
  diffusion.sweeps summarize`` (without plots) and by a rerun's Ledger.open."""
  folder = tmp_path / "sweep"
  original = _sweep(folder)
  path = folder / "sweep.json"
  text = json.dumps(original)
  tally, m = Tally("sweep.json"), mutations(41)

  def read():
    report.summarize(str(folder), plots=False)
    points = original["points"]
    ledger.Ledger.open(str(folder), original["config"], original["sweep"], {},
                       [p["name"] for p in points], [p["overrides"] for p in points])
  for i in range(360):
    if i < 300:
      label, mutant = m.of_tree(original)
      path.write_text(json.dumps(mutant))
    else:
      label, data = m.of_bytes(text.encode())
      path.write_bytes(data)
    tally.run(label, read, lambda _: None, str(path), time_limit)
  tally.assert_clean(360)


def _counted(skipped) -> None:
  assert isinstance(skipped, int) and skipped >= 0


def test_metrics_jsonl(tmp_path, mutations, time_limit):
  """metrics.jsonl: 200 mutations of one row's fields and 100 of the file's bytes, read by
  the sweep summary, the rows' readers and a resume's truncation: a damaged line is skipped
  and counted, never an error."""
  folder = tmp_path / "sweep"
  original = _sweep(folder)
  (folder / "sweep.json").write_text(json.dumps(original))
  metrics = pathlib.Path(original["points"][0]["workdir"]) / "metrics.jsonl"
  good = metrics.read_text()
  rows = [json.loads(line) for line in good.splitlines()]
  tally, m = Tally("metrics.jsonl"), mutations(42)

  def read():
    _, skipped = metric_writers.read_metrics_counted(str(metrics.parent))
    report.summarize(str(folder), plots=False)
    metric_writers.truncate_metrics(str(metrics.parent), 2)
    return skipped
  for i in range(300):
    if i < 200:
      label, row = m.of_tree(rows[1])
      text = "\n".join([json.dumps(rows[0]), json.dumps(row), json.dumps(rows[2])]) + "\n"
    else:
      label, data = m.of_bytes(good.encode())
      text = data.decode("utf-8", errors="replace")
    metrics.write_text(text)
    tally.run(label, read, _counted, str(metrics), time_limit)
  tally.assert_clean(300)
  assert tally.counts["read"] == 300


def test_reproduction_record(tmp_path, mutations, time_limit):
  """reproduce.json and results.json: 200 mutations each, read by the check that a workdir
  holds no other entry's reproduction."""
  tally, m = Tally("reproduce.json / results.json"), mutations(43)
  for i in range(400):
    name = "reproduce.json" if i % 2 else "results.json"
    workdir = tmp_path / f"w{i % 2}"
    workdir.mkdir(exist_ok=True)
    original = {"baseline": "ddpm_digits", "command": "python -m diffusion.reproduce x"}
    if i < 300:
      label, mutant = m.of_tree(original)
      (workdir / name).write_text(json.dumps(mutant))
    else:
      label, data = m.of_bytes(json.dumps(original).encode())
      (workdir / name).write_bytes(data)
    tally.run(f"{name}: {label}",
              lambda w=workdir: runner._check_workdir_is_ours("ddpm_digits", str(w)),  # pylint: disable=protected-access
              lambda _: None, str(workdir), time_limit)
  tally.assert_clean(400)


def _validates_or_one_line(config) -> None:
  """A config file that loads is the user's own: a bad field is refused in one line
  naming the field (train.py adds nothing more), never another exception."""
  try:
    checks.validate(config)
  except ConfigError as e:
    assert "\n" not in str(e)


def test_config_file(tmp_path, mutations, time_limit):
  """A config file (Python): 150 mutations of its bytes, loaded by the one config-file
  loader (a failure names the file) and validated (a failure names the field)."""
  original = (REPO / "configs" / "ddpm" / "toy_mixture.py").read_bytes()
  path = tmp_path / "toy.py"
  tally, m = Tally("config file"), mutations(44)
  for _ in range(150):
    label, data = m.of_bytes(original)
    path.write_bytes(data)
    tally.run(label, lambda: files.load(str(path)), _validates_or_one_line, str(path),
              time_limit)
  tally.assert_clean(150)

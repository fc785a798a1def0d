"""The Optuna side of a search: samplers, ASHA as a pruner, the study in DIR, importances.

  searcher     random         Optuna's RandomSampler
               quasirandom    QMCSampler, scrambled Sobol (Google's tuning playbook: explore
                              with quasi-random points, which cover a space more evenly)
               tpe            TPESampler: learns from finished trials (Bergstra et al. 2011)
  scheduler    asha           SuccessiveHalvingPruner: rungs at min_steps · η^k, a trial goes
                              on past a rung only if its metric is in the best 1/η of those
                              that reached it (asynchronous successive halving, Li et al.
                              2020, "A System for Massively Parallel Hyperparameter Tuning")

The study lives in ``DIR/optuna_journal.log`` (Optuna's JournalStorage over a
JournalFileBackend: an append-only log with a file lock), so several processes on one
machine share one study, and a driver that was killed continues the same study. Every
sampler is deterministic from the search's seed and the trial number
(:class:`TrialSeededSampler`), so a resumed search draws the trials an uninterrupted one
would have drawn (Sobol's position in its sequence is kept in the study itself).
"""

import hashlib
import os
import warnings
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from diffusion.sweeps.spaces import Space

JOURNAL = "optuna_journal.log"
STUDY_NAME = "search"


def trial_seed(seed: int, number: int) -> int:
  """The sampler seed of trial ``number`` of a search seeded ``seed`` (a 32-bit hash)."""
  digest = hashlib.sha256(f"{seed}:{number}".encode()).digest()
  return int.from_bytes(digest[:4], "little")


def tpe_startup_trials(trials: int) -> int:
  """TPE's random start: a quarter of the trials, 2 to 10 (Optuna's default is 10, which
  leaves a 16-trial search only 6 guided draws)."""
  return min(10, max(2, trials // 4))


class TrialSeededSampler(optuna.samplers.BaseSampler):
  """A sampler made afresh for every trial from (seed, trial number).

  Optuna's samplers keep their random state in the process: a driver that restarts would
  draw the stream from its start again. Random and TPE samplers hold no other state (TPE
  reads the finished trials from the study), so one made per trial with
  :func:`trial_seed` draws the same trial whatever happened to the processes before it.
  """

  def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler], seed: int):
    self._make, self._seed = make, seed
    self._number: Optional[int] = None
    self._inner = make(seed)

  def _for(self, trial) -> optuna.samplers.BaseSampler:
    if trial.number != self._number:
      self._number = trial.number
      self._inner = self._make(trial_seed(self._seed, trial.number))
    return self._inner

  def infer_relative_search_space(self, study, trial):
    return self._for(trial).infer_relative_search_space(study, trial)

  def sample_relative(self, study, trial, search_space):
    return self._for(trial).sample_relative(study, trial, search_space)

  def sample_independent(self, study, trial, param_name, param_distribution):
    return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

  def before_trial(self, study, trial):
    self._for(trial).before_trial(study, trial)

  def after_trial(self, study, trial, state, values):
    self._for(trial).after_trial(study, trial, state, values)

  def reseed_rng(self) -> None:
    """Nothing: the seed of every trial is fixed by design."""


def make_sampler(searcher: str, seed: int, trials: int) -> optuna.samplers.BaseSampler:
  """The searcher's Optuna sampler, deterministic from ``seed``."""
  random = TrialSeededSampler(lambda s: optuna.samplers.RandomSampler(seed=s), seed)
  if searcher == "random":
    return random
  if searcher == "quasirandom":
    # The Sobol sequence is one stream of the seed; its position is a study attribute.
    # Its first trial (no search space known yet) is drawn by the independent sampler.
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
      return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed,
                                        independent_sampler=random,
                                        warn_independent_sampling=False)
  if searcher == "tpe":
    startup = tpe_startup_trials(trials)
    return TrialSeededSampler(
        lambda s: optuna.samplers.TPESampler(seed=s, n_startup_trials=startup), seed)
  raise ValueError(f"unknown searcher {searcher!r}")


def make_pruner(scheduler: str, min_steps: Optional[int], reduction: int):
  """ASHA (Optuna's SuccessiveHalvingPruner, first rung ``min_steps``, factor η =
  ``reduction``, no early-stopping rate), or no pruning."""
  if scheduler == "asha":
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=int(min_steps),
                                                  reduction_factor=int(reduction),
                                                  min_early_stopping_rate=0)
  return optuna.pruners.NopPruner()


def open_study(sweep_dir: str, *, searcher: str, seed: int, trials: int, mode: str,
               scheduler: str = "none", min_steps: Optional[int] = None,
               reduction: int = 3) -> optuna.Study:
  """The search's study in ``DIR/optuna_journal.log``, created or loaded."""
  optuna.logging.set_verbosity(optuna.logging.WARNING)   # the search prints its own lines
  storage = JournalStorage(JournalFileBackend(os.path.join(sweep_dir, JOURNAL)))
  return optuna.create_study(storage=storage, study_name=STUDY_NAME, load_if_exists=True,
                             sampler=make_sampler(searcher, seed, trials),
                             pruner=make_pruner(scheduler, min_steps, reduction),
                             direction="maximize" if mode == "max" else "minimize")


def ask(study: optuna.Study, space: Space) -> Tuple[optuna.Trial, Dict[str, Any]]:
  """A new trial and its overrides (config values, in the space's key order)."""
  trial = study.ask({key: dist.to_optuna() for key, dist in space.items()})
  return trial, overrides_of(trial.params, space)


def overrides_of(params: Dict[str, Any], space: Space) -> Dict[str, Any]:
  """Optuna's parameters of a trial as config overrides."""
  return {key: dist.from_optuna(params[key]) for key, dist in space.items()}


def trial_by_number(study: optuna.Study, number: int) -> optuna.Trial:
  """The running trial ``number`` of the study, to report to and tell (a resumed one)."""
  # Optuna's ask-and-tell has no public lookup of a trial by number; the storage has one.
  storage, study_id = study._storage, study._study_id  # pylint: disable=protected-access
  return optuna.Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, number))


def state_of(study: optuna.Study, number: int) -> TrialState:
  return study.get_trials(deepcopy=False)[number].state


def is_running(study: optuna.Study, number: int) -> bool:
  """Whether trial ``number`` is still open (neither told nor failed)."""
  return state_of(study, number) == TrialState.RUNNING


def count(study: optuna.Study) -> int:
  """Trials the study holds, in every state."""
  return len(study.get_trials(deepcopy=False))


def tell(study: optuna.Study, number: int, outcome: str, value: Optional[float] = None) -> None:
  """Records a trial's end: ``done`` (with its value), ``stopped`` (pruned) or ``failed``.
  A trial the study has already finished is left alone (another process told it)."""
  if state_of(study, number) != TrialState.RUNNING:
    return
  if outcome == "done":
    study.tell(number, value)
  elif outcome == "stopped":
    study.tell(number, state=TrialState.PRUNED)
  else:
    study.tell(number, state=TrialState.FAIL)


def importances(study: optuna.Study, keys: Sequence[str]) -> Optional[Dict[str, float]]:
  """fANOVA parameter importances over the completed trials (Hutter et al. 2014; Optuna's
  FanovaImportanceEvaluator, seeded), summing to one; None with fewer than two completed
  trials or a metric that never varied."""
  complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
  if len(complete) < 2 or len({t.value for t in complete}) < 2:
    return None
  varied = [k for k in keys if len({repr(t.params.get(k)) for t in complete}) > 1]
  if not varied:
    return None
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    return optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), params=varied)

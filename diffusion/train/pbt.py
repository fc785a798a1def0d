"""Population-based training inside one compiled population: exploit and explore on device.

PBT (Jaderberg et al. 2017, "Population Based Training of Neural Networks", §3) trains a
population and, every so often, lets each member in the bottom quantile of a metric
*exploit* (copy the weights of a member from the top quantile) and *explore* (perturb the
copied hyperparameters). Libraries do this by saving a checkpoint and restarting a trial
from another's; here the members are rows of one stacked train state, so the copy is a
gather along the population axis on the device, between two compiled calls:

  state <- state[sources]        parameters, optimizer state (moments, count), EMA, step
  keep own training.seed         (each member keeps its data order and noise stream)
  hyperparameters of the exploring members <- their new configs' (lr, EMA decay, ...)

What to copy and which values to try is decided elsewhere (an :class:`Exploiter`: the
search side, :mod:`diffusion.sweeps.pbt`, which ranks the members, draws the perturbations
from (seed, step) and records the lineage); this module applies a :class:`Decision` and
makes a resumed population bit-identical to one that was not interrupted:

  - a member's hyperparameters after an exploit are in its state, so a resumed member
    keeps its checkpoint's rather than its config's (``keeps_checkpoint_hyperparameters``);
  - the loop saves a step's checkpoint before it hands the step's reports to the layout
    (:meth:`diffusion.train.layout.Layout.exploit`), so a checkpoint of an exploit step
    holds the state before the exploit: on resume the recorded decision of that step is
    applied again, and where none was recorded (stopped between the save and the
    decision) the population resumes from its previous common checkpoint and redoes the
    steps, deterministically, deciding again.
"""

import dataclasses
from typing import Any, Dict, Optional, Protocol, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from diffusion import families
from diffusion.errors import ConfigError
from diffusion.train import optim
from diffusion.train.loop import MemberOnLog, train_layout
from diffusion.train.population import Population, make_population
from diffusion.train.step import TrainState, train_hparams


@dataclasses.dataclass(frozen=True)
class Decision:
  """One exploit-and-explore of a population at ``step``.

  Attributes:
    step: the training step after which it applies.
    sources: per member, the member whose state it continues from (itself if unchanged).
    configs: {member: its typed config after exploring}, for the members that copied.
  """
  step: int
  sources: Tuple[int, ...]
  configs: Dict[int, Any]


class Exploiter(Protocol):
  """What the population asks of the search side (:mod:`diffusion.sweeps.pbt`)."""

  def due(self, step: int) -> bool:
    """Whether the members are ranked after ``step``."""

  def decide(self, step: int, reports: Dict[int, Dict[str, float]]) -> Decision:
    """The decision of a due ``step`` from the members' reports ({member: scalars}),
    recorded before it is returned."""

  def recorded(self, step: int) -> bool:
    """Whether the decision of ``step`` was recorded (by this process or an earlier one)."""

  def resume(self, step: Optional[int]) -> Optional[Decision]:
    """Forgets the decisions after ``step`` (None: all), which a resumed population makes
    again; returns the recorded decision of ``step`` itself, if any."""


def state_hyperparameters(cfg) -> Tuple[Dict[str, float], Dict[str, float]]:
  """(TrainState.hparams but the seed, the optimizer state's hyperparameters) of a typed
  config, as :func:`diffusion.train.loop.initial_state` sets them."""
  loss_hparams = families.make_family(cfg).loss_hparams()
  hparams = train_hparams(0, cfg.training.ema_decay, loss_hparams)
  return ({k: float(v) for k, v in hparams.items() if k != "seed"},
          optim.hyperparameters(cfg.optim))


@jax.jit
def _exploit(state: TrainState, sources, changed, hparams, opt_hparams) -> TrainState:
  """``state`` with member i continuing from member ``sources[i]`` (all of its state but
  its seed) and, where ``changed[i]``, the hyperparameters ``hparams`` / ``opt_hparams``
  ([P] arrays each)."""
  copied = jax.tree.map(lambda a: jnp.take(a, sources, axis=0), state)

  def chosen(new, old):
    mask = changed.reshape(changed.shape + (1,) * (old.ndim - 1))
    return jnp.where(mask, new.astype(old.dtype), old)

  own = dict(copied.hparams, seed=state.hparams["seed"])
  own.update({k: chosen(v, own[k]) for k, v in hparams.items()})
  opt = copied.opt_state
  opt = opt._replace(hyperparams={k: chosen(opt_hparams[k], v) if k in opt_hparams else v
                                  for k, v in opt.hyperparams.items()})
  return copied.replace(hparams=own, opt_state=opt)


class PBTPopulation(Population):
  """A :class:`Population` whose members exploit and explore between calls, as
  ``exploiter`` decides (see the module docstring)."""

  keeps_checkpoint_hyperparameters = True

  def __init__(self, members, mesh, names: Optional[Sequence[str]], strategy: str,
               exploiter: Exploiter):
    super().__init__(members, mesh, names, strategy)
    self.exploiter = exploiter
    self._pending: Optional[Decision] = None

  def describe(self) -> str:
    return f"population of {len(self.members)} ({self.strategy}, PBT) | "

  def restore(self, states):
    """Every member at one step: the newest checkpoint all of them hold whose exploit
    (if that step is due) was recorded; from scratch if there is none."""
    common = set.intersection(*(set(m.ckpt.steps()) for m in self.members))
    usable = [s for s in sorted(common) if not self.exploiter.due(s) or
              self.exploiter.recorded(s)]
    for step in reversed(usable):
      try:
        restored = [(m.ckpt.restore(step, state), step)
                    for m, state in zip(self.members, states)]
      except Exception:  # noqa: BLE001 - an unreadable one: try the one before
        continue
      self._pending = self.exploiter.resume(step)
      return restored
    self._pending = self.exploiter.resume(None)
    return [(state, None) for state in states]

  def place(self, states):
    state = super().place(states)
    if self._pending is not None:   # the checkpoint holds the state before its exploit
      state, self._pending = self.apply(state, self._pending), None
    return state

  def exploit(self, state, step: int, reports: Dict[int, Dict[str, float]]):
    if not self.exploiter.due(step):
      return state
    return self.apply(state, self.exploiter.decide(step, reports))

  def apply(self, state, decision: Decision):
    """``state`` after ``decision`` (on device: a gather along the population axis)."""
    if not decision.configs:
      return state
    n = len(self.members)
    changed = np.asarray([i in decision.configs for i in range(n)])
    rows = {i: state_hyperparameters(cfg) for i, cfg in decision.configs.items()}
    first = next(iter(rows.values()))   # the rows of unchanged members are not used
    hparams, opt = ({k: np.asarray([rows.get(i, first)[part][k] for i in range(n)], np.float32)
                     for k in first[part]} for part in (0, 1))
    shardings = jax.tree.map(lambda a: a.sharding, state)
    out = _exploit(state, np.asarray(decision.sources, np.int32), changed, hparams, opt)
    return jax.device_put(out, shardings)


def train_pbt(configs: Sequence, workdirs: Sequence[str], *, exploiter: Exploiter,
              names: Optional[Sequence[str]] = None, progress: bool = True, devices=None,
              strategy: str = "auto", on_log: Optional[MemberOnLog] = None) -> list:
  """Trains P >= 2 runs that differ only in population fields as one population with
  population-based training (:func:`diffusion.train.population.train_population`, plus
  ``exploiter``'s exploit and explore between calls); per member its final metrics or the
  exception that stopped it."""
  if jax.process_count() > 1:   # the exploiter decides from the chief's evaluations
    raise ConfigError("--scheduler=pbt ranks the members by evaluations the chief process "
                      "runs; run it in one process (without --distributed).")
  layout = make_population(configs, workdirs, names=names, devices=devices,
                           strategy=strategy, layout=PBTPopulation, exploiter=exploiter)
  return train_layout(layout, progress=progress, on_log=on_log)

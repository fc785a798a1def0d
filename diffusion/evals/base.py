"""What every evaluator shares: the interface, its randomness, its result files.

An evaluator is built from its own config section (``config.eval.<name>``), the
model family, the run's workdir (caches) and a seed, after its own rule
``check_applies(config)`` (ConfigError when it does not apply to the run, e.g. bits/dim
of a VE process); then

  run(params, step, samples=None) -> {"eval/<metric>": float}
  summary() -> str           one console line describing the latest result
  last                       the latest full result (dict), also written to files

Evaluators that score samples (``SCORES_SAMPLES = True``) draw their own with the
family's sampler, or score the uint8 ``samples`` given (``sample.py`` passes the
ones it drew). ``MAXIMISED`` names the metrics where larger is better (sweep
summaries read it); ``SHORTCUT``, when set, is the help of ``sample.py --<name>``.
Files go to ``output_dir`` (default: the workdir). Long work announces itself in one
line and, when the caller sets ``progress`` (sample.py, a training run with its bar),
shows a bar on stderr (:meth:`Evaluator.bar`).
"""

import json
import os
from typing import Dict, Optional, Tuple

import jax
import numpy as np

from diffusion.families import draw
from diffusion.io import atomic
from diffusion.io.bars import ProgressBar, announce


def eval_key(seed: int, salt: int, step: int) -> jax.Array:
  """Evaluation randomness: a pure function of (training.seed, evaluator, step)."""
  return jax.random.fold_in(jax.random.PRNGKey(seed + salt), step)


class Evaluator:
  """Base of the evaluators: holds the section, family, workdir, seed and results."""
  name = ""
  SCORES_SAMPLES = False
  MAXIMISED: Tuple[str, ...] = ()
  SHORTCUT = ""   # the help of sample.py's --<name>, a shortcut for --eval=<name> ("": none)

  @staticmethod
  def check_applies(config) -> None:
    """ConfigError (one line) unless this evaluator applies to the typed run ``config``;
    checked before anything trains or samples (:func:`diffusion.evals.check_applies`)."""
    del config

  def __init__(self, cfg, family, workdir: str = "", seed: int = 0,
               output_dir: Optional[str] = None):
    self.check_applies(family.config)
    self.cfg, self.family, self.workdir, self.seed = cfg, family, workdir, seed
    self.output_dir = output_dir or workdir
    self.last: Optional[dict] = None
    self._sample_fn = None
    self.progress = False   # bars on stderr for long work (set by the caller)

  @property
  def every(self) -> int:
    return self.cfg.every

  def run(self, params, step: int, samples: Optional[np.ndarray] = None) -> Dict[str, float]:
    raise NotImplementedError

  def samples(self, params, step: int, given: Optional[np.ndarray], salt: int) -> np.ndarray:
    """The uint8 ``given`` samples, or ``cfg.num_samples`` drawn here with the family's
    sampler (``cfg.batch_size`` per compiled call, randomness from (seed, salt, step))."""
    if given is not None:
      return given
    if self._sample_fn is None:
      self._sample_fn = self.family.sample_fn(self.cfg.batch_size)
    announce(f"{self.name}: drawing {self.cfg.num_samples} samples, {self.cfg.batch_size} "
             "per call")
    done = [0]

    def drawn_chunk(n: int) -> None:
      done[0] += n
      bar(done[0], self.cfg.num_samples)

    with self.bar("sampling", "img") as bar:
      drawn = draw(self._sample_fn, params, self.cfg.num_samples, self.cfg.batch_size,
                   eval_key(self.seed, salt, step), on_chunk=drawn_chunk)
    return self.family.to_uint8(drawn)

  def bar(self, desc: str, unit: str) -> ProgressBar:
    """An ``on_progress(done, total)`` bar for long work (drawn when :attr:`progress`)."""
    return ProgressBar(f"{self.name}: {desc}", unit, enabled=self.progress)

  def summary(self) -> str:
    """One line for the console about :attr:`last`."""
    return f"{self.name}: " + "  ".join(f"{k}={v:.4g}" for k, v in (self.last or {}).items()
                                        if isinstance(v, (int, float)))

  def write_json(self, name: str, result: dict) -> Optional[str]:
    """Writes ``result`` as ``<output_dir>/<name>`` (atomically); returns the path."""
    if not self.output_dir:
      return None
    path = os.path.join(self.output_dir, name)
    atomic.write_text(path, json.dumps(result, indent=2, sort_keys=True, default=float))
    return path

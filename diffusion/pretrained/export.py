"""A run's EMA weights as a diffusers folder that ``UNet2DModel.from_pretrained`` loads.

``export_run(DIR, OUT)`` writes

  OUT/config.json                           UNet2DModel's config (the DDPM family's
                                            conventions, see :mod:`diffusion.pretrained.diffusers`)
  OUT/diffusion_pytorch_model.safetensors   the EMA parameters of the run's newest readable
                                            checkpoint (or ``step``), float32, today's names
  OUT/scheduler_config.json                 a DDPMScheduler of the run's process (VP runs):
                                            the named linear schedule, else its betas
                                            (``trained_betas``), and its sampler variance

so a model trained (or imported) here runs in PyTorch with the same ε:
``UNet2DModel.from_pretrained(OUT)(x_t, t).sample`` is ε̂(x_t, t) of
``diffusion.load(DIR)``, in NCHW. Export then import gives back the same parameters
bit for bit (only transpositions and renaming happen). OUT is written all or nothing.
"""

import json
import os
from typing import Any, Dict

import numpy as np

from diffusion import families
from diffusion.config import checks
from diffusion.core import schedules
from diffusion.io.workdir import load_config, restore_ema_params
from diffusion.pretrained import diffusers
from diffusion.pretrained.importer import fresh_folder
from diffusion.pretrained.network import WeightsError, flatten, spec_of_model

_VARIANCE = {"fixedlarge": "fixed_large", "fixedsmall": "fixed_small",
             "learned_range": "learned_range"}


def scheduler_config(cfg) -> Dict[str, Any]:
  """diffusers' DDPMScheduler config of a VP run (its process and sampler variance)."""
  d = cfg.diffusion
  sched = {"_class_name": "DDPMScheduler", "_diffusers_version": diffusers.EXPORT_VERSION,
           "num_train_timesteps": d.num_timesteps, "prediction_type": "epsilon",
           "variance_type": _VARIANCE[cfg.sampling.var_type if d.var_type != "learned_range"
                                      else "learned_range"],
           "clip_sample": bool(cfg.sampling.clip_x0), "clip_sample_range": 1.0}
  if d.schedule == "linear":
    sched.update(beta_schedule="linear", beta_start=d.beta_start, beta_end=d.beta_end,
                 trained_betas=None)
  else:
    betas = schedules.get_beta_schedule(d.schedule, d.num_timesteps, d.beta_start,
                                        d.beta_end, d.cosine_s)
    sched.update(beta_schedule="linear", beta_start=float(betas[0]),
                 beta_end=float(betas[-1]), trained_betas=[float(b) for b in betas])
  return sched


def export_run(workdir: str, out: str, step: int = -1) -> Dict[str, Any]:
  """Writes the diffusers folder ``out`` of run ``workdir`` (EMA params of checkpoint
  ``step``; -1: the newest readable one); returns what was written.

  Raises:
    ConfigError / WeightsError: one line (no run, no checkpoint, a network without a
      UNet2DModel counterpart, ``out`` not new or empty).
  """
  cfg = checks.validate(load_config(workdir))
  if cfg.family != "diffusion":
    raise WeightsError(f"--workdir={workdir} is a {cfg.family} run; only diffusion U-Nets "
                       "export to diffusers.")
  spec = spec_of_model(cfg.model, cfg.data)
  family = families.make_family(cfg)
  params, found = restore_ema_params(workdir, family, step)
  leaves = {path: np.asarray(a, np.float32) for path, a in flatten(dict(params)).items()}
  state = diffusers.from_params(leaves, spec.num_levels)
  written = [diffusers.CONFIG_NAME, diffusers.SAFETENSORS_NAME]
  with fresh_folder(out, "--out") as tmp:
    with open(os.path.join(tmp, diffusers.CONFIG_NAME), "w", encoding="utf-8") as f:
      json.dump(diffusers.config_from_spec(spec), f, indent=2, sort_keys=True)
    diffusers.write_state_dict(os.path.join(tmp, diffusers.SAFETENSORS_NAME), state)
    if cfg.diffusion.process_kind == "vp":
      with open(os.path.join(tmp, diffusers.SCHEDULER_NAME), "w", encoding="utf-8") as f:
        json.dump(scheduler_config(cfg), f, indent=2, sort_keys=True)
      written.append(diffusers.SCHEDULER_NAME)
  return {"out": out, "step": found, "files": written,
          "num_params": int(sum(a.size for a in leaves.values()))}

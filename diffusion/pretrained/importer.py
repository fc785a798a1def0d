"""A release's weights written as an ordinary run: ``DIR/config.json`` + an orbax checkpoint.

``import_weights(SRC, DIR)`` reads a diffusers folder or a DDPM TensorFlow checkpoint,
builds the config of the release (its network sizes from the weights' own config or
shapes; data, schedule and sampler variance from the dataset's config file, e.g.
``configs/ddpm/cifar10.py``: fixedlarge for CIFAR-10, fixedsmall at 256 px), checks
every tensor against the parameters that config implies, and writes the run exactly
as ``train.py`` does: :func:`diffusion.io.workdir.write_config` and a
:class:`diffusion.io.checkpoints.Checkpointer` save of a :class:`TrainState` made by
:func:`diffusion.train.step.create_train_state`, whose parameters and EMA parameters
are both the imported weights. ``sample.py --workdir=DIR``, the evaluators and
``train.py`` (fine-tuning: it resumes) then use it unchanged.

Everything is written to a temporary folder beside DIR and renamed to DIR at the end,
so a failure (a bad tensor, Ctrl-C, a full disk) leaves nothing half-written; DIR
must be new or empty. ``DIR/pretrained.json`` records where the weights came from
(file, SHA-256, format, which weights, step).
"""

import contextlib
import datetime
import importlib.util
import json
import os
import re
import shutil
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from diffusion import families
from diffusion.config.checks import validate
from diffusion.config import files, parse_config
from diffusion.core import schedules
from diffusion.evals.inception_convert import sha256
from diffusion.io.workdir import io_error, is_disk_full, write_config
from diffusion.io.checkpoints import Checkpointer
from diffusion.pretrained import ddpm_tf, diffusers, ncsn_torch
from diffusion.pretrained.network import UNetSpec, WeightsError, flatten, unflatten
from diffusion.train import optim
from diffusion.train.step import create_train_state

PROVENANCE = "pretrained.json"

# The DDPM releases: a token of the folder's name -> the config of the dataset.
RELEASES = (
    ("cifar10", "configs.ddpm.cifar10"),
    ("celebahq", "configs.ddpm.celebahq_256"),
    ("church", "configs.ddpm.church_256"),
    ("bedroom", "configs.ddpm.bedroom_256"),
    ("cat", "configs.ddpm.cat_256"),
)


def release_config_name(src: str) -> Optional[str]:
  """The config module of a release, from its folder's name (google/ddpm-ema-church-256,
  diffusion_lsun_church_model, diffusion_celeba_hq_model/model.ckpt-N, ...), or None."""
  parts = os.path.abspath(src).split(os.sep)[-3:]
  for part in reversed(parts):
    tokens = [t for t in re.split(r"[^a-z0-9]+", part.lower()) if t]
    joined = set(tokens) | {a + b for a, b in zip(tokens, tokens[1:])}   # celeba_hq
    for token, module in RELEASES:
      if token in joined:
        return module
  return None


def load_config_module(name: str):
  """``get_config()`` of a config module such as ``configs.ddpm.cifar10`` (found where
  Python would import it, loaded by the one config-file loader)."""
  try:
    spec = importlib.util.find_spec(name)
  except ModuleNotFoundError:   # its package is not importable
    spec = None
  if spec is None or not spec.origin:
    raise WeightsError(f"no config module {name!r}; pass --config=configs/<variant>/<file>.py.")
  return files.load(spec.origin, name=name.replace(".", "/") + ".py")


def _base_config(src: str, config, spec_size: Optional[int],
                 config_name: Optional[str] = None) -> Tuple[Any, str]:
  """The config the release's run starts from, and where it came from."""
  if config is not None:
    return config, config_name or "the given config"
  name = release_config_name(src)
  if name is None and spec_size == 32:
    name = "configs.ddpm.cifar10"   # the one 32 px DDPM release
  if name is None:
    raise WeightsError(
        f"{src}: cannot tell which dataset these weights were trained on from the folder's "
        "name; pass --config=configs/ddpm/<dataset>.py (cifar10, celebahq_256, church_256, "
        "bedroom_256, cat_256).")
  return load_config_module(name), name.replace(".", "/") + ".py"


def release_config(base, spec: UNetSpec, source: str):
  """The typed, validated config of a release: ``base`` with the network ``spec`` sets.

  Raises WeightsError when the weights do not fit ``base``'s data (another image size
  or channel count)."""
  cfg = parse_config(base)
  if cfg.family != "diffusion" or cfg.diffusion.process_kind != "vp":
    raise WeightsError(f"the config is a {cfg.family}/{cfg.diffusion.variant} config; DDPM "
                       "weights need a DDPM (VP) config such as configs/ddpm/cifar10.py.")
  if cfg.data.image_size != spec.image_size:
    raise WeightsError(
        f"{source} is a {spec.image_size} px network, but the config is for "
        f"data.image_size={cfg.data.image_size}; give the config of its dataset (or "
        f"--config.data.image_size={spec.image_size}).")
  if cfg.data.num_channels != spec.in_channels:
    raise WeightsError(
        f"{source} takes {spec.in_channels} channels, but the config's data has "
        f"data.num_channels={cfg.data.num_channels}; give the config of its dataset.")
  var_type = cfg.diffusion.var_type
  if spec.out_channels == 2 * spec.in_channels and var_type != "learned_range":
    raise WeightsError(f"{source} outputs ε and a variance ({spec.out_channels} channels); "
                       "set --config.diffusion.var_type=learned_range and "
                       "--config.diffusion.loss=hybrid.")
  cfg = cfg.replace(model=cfg.model.replace(**spec.model_fields()))
  return validate(cfg)


# diffusers' beta_schedule names -> ours (diffusers' "scaled_linear" is DDPM's "quad":
# linspace(√β_start, √β_end, T)², not Improved DDPM's T-scaled linear schedule).
DIFFUSERS_SCHEDULES = {"linear": "linear", "scaled_linear": "quad", "sigmoid": "sigmoid",
                       "squaredcos_cap_v2": "cosine"}


def check_scheduler(path: Optional[str], sched: Optional[Dict[str, Any]], cfg) -> list:
  """A diffusers ``scheduler_config.json`` against the config's process; returns notes.

  The noise schedule must be the config's (else WeightsError naming the field); a
  different ``variance_type`` is only noted (the config follows the paper)."""
  if sched is None:
    return []
  d = cfg.diffusion
  checks = [("num_train_timesteps", sched.get("num_train_timesteps", 1000), d.num_timesteps),
            ("prediction_type", sched.get("prediction_type", "epsilon"), "epsilon")]
  if sched.get("trained_betas") is not None:
    betas = schedules.get_beta_schedule(d.schedule, d.num_timesteps, d.beta_start,
                                        d.beta_end, d.cosine_s)
    theirs = np.asarray(sched["trained_betas"], np.float64)
    if theirs.shape != betas.shape or not np.allclose(theirs, betas, rtol=1e-6, atol=0):
      raise WeightsError(f"{path}: trained_betas are not the config's schedule "
                         f"(diffusion.schedule={d.schedule!r}); these weights were trained "
                         "for another schedule.")
  else:
    named = sched.get("beta_schedule", "linear")
    checks.append(("beta_schedule", DIFFUSERS_SCHEDULES.get(named, named), d.schedule))
    if d.schedule in ("linear", "quad", "sigmoid"):
      checks += [("beta_start", sched.get("beta_start", 1e-4), d.beta_start),
                 ("beta_end", sched.get("beta_end", 0.02), d.beta_end)]
  for field, value, want in checks:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    same = (number and bool(np.isclose(value, want, rtol=1e-6, atol=0))
            if isinstance(want, float) else value == want)
    if not same:
      raise WeightsError(f"{path}: {field}={json.dumps(value)} does not match the config's "
                         f"process ({json.dumps(want)}); these weights were trained for "
                         "another schedule.")
  names = {"fixed_large": "fixedlarge", "fixed_small": "fixedsmall",
           "learned_range": "learned_range"}
  theirs = names.get(sched.get("variance_type", ""), sched.get("variance_type"))
  if theirs and theirs != cfg.sampling.var_type:
    return [f"note: {path} says variance_type={sched.get('variance_type')!r}; the run "
            f"samples with sampling.var_type={cfg.sampling.var_type!r} as the paper did "
            f"(override with --config.sampling.var_type={theirs})."]
  return []


def import_weights(src: str, workdir: str, config=None, raw: bool = False,
                   config_name: Optional[str] = None) -> Dict[str, Any]:
  """Imports the release in ``src`` as a run in ``workdir``; returns what was done.

  Args:
    src: a diffusers folder (``config.json`` + ``diffusion_pytorch_model.safetensors`` or
      ``.bin``; or a pipeline folder with ``unet/``), or a DDPM TensorFlow checkpoint
      (its folder, with a ``checkpoint`` file or one ``*.index``, or the prefix
      ``.../model.ckpt-N``).
    workdir: the run to write; must not exist or be empty.
    config: the config to start from (ConfigDict, dict or typed); default: the
      dataset's config file, told from ``src``'s name (see :data:`RELEASES`).
    raw: TensorFlow checkpoints only: the raw weights instead of the EMA shadows.
    config_name: where ``config`` came from, for the record (e.g. its file).

  Returns:
    {"workdir", "config_file", "num_params", "step", "notes", **provenance}.

  Raises:
    WeightsError (a ConfigError): one line naming the file and the field or tensor.
  """
  if os.path.exists(workdir) and (not os.path.isdir(workdir) or os.listdir(workdir)):
    with fresh_folder(workdir):   # raises its one line before anything is read
      pass
  folder = diffusers.find_folder(src) if os.path.isdir(src) else None
  prefix = None if folder else ddpm_tf.find_prefix(src)
  if folder is None and prefix is None:
    raise WeightsError(
        f"{src}: not a diffusers folder (config.json with diffusion_pytorch_model."
        "safetensors or .bin) nor a TensorFlow checkpoint (model.ckpt-N.index + data).")
  notes = []
  if folder is not None:
    if raw:
      raise WeightsError(f"--raw picks the raw weights of a TensorFlow checkpoint; {src} is "
                         "a diffusers folder (its weights are what was published).")
    cfg_path = os.path.join(folder, diffusers.CONFIG_NAME)
    spec = diffusers.spec_from_config(diffusers.read_config(folder), cfg_path)
    base, config_file = _base_config(src, config, spec.image_size, config_name)
    cfg = release_config(base, spec, folder)
    notes += check_scheduler(*diffusers.read_scheduler(folder), cfg)
    weights = diffusers.weights_file(folder)
    shapes = _shapes(cfg)
    state = diffusers.read_state_dict(weights)
    leaves, naming = diffusers.to_params(state, shapes, spec.num_levels, weights)
    del state
    step, which = 0, "as published"
    fmt = "diffusers " + ("safetensors" if weights.endswith(".safetensors") else "torch pickle")
    fmt += f", attention names {naming}"
  else:
    reader = ddpm_tf.CheckpointReader(prefix)
    base, config_file = _base_config(prefix, config, None, config_name)
    size = parse_config(base).data.image_size
    spec = ddpm_tf.spec_from_checkpoint(reader, size)
    cfg = release_config(base, spec, prefix)
    leaves = ddpm_tf.to_params(reader, _shapes(cfg), ema=not raw)
    step = reader.global_step()
    which = "raw variables" if raw else "EMA shadow variables (ExponentialMovingAverage)"
    weights, fmt = reader.data_files[0], "TensorFlow checkpoint (DDPM's variable names)"
  num_params = int(sum(a.size for a in leaves.values()))
  provenance = {
      "source": os.path.abspath(src), "format": fmt, "weights_file": os.path.abspath(weights),
      "sha256": sha256(weights), "weights": which, "step": step,
      "config_file": config_file, "num_params": num_params,
      "network": {"ch": spec.ch, "ch_mult": list(spec.ch_mult),
                  "num_res_blocks": spec.num_res_blocks,
                  "attn_resolutions": list(spec.attn_resolutions),
                  "image_size": spec.image_size, "out_channels": spec.out_channels},
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
  }
  write_run(cfg, unflatten(leaves), workdir, step, provenance)
  return dict(provenance, workdir=workdir, notes=notes)


def _shapes(cfg) -> Dict[str, Tuple[int, ...]]:
  """{"a/b/c": shape} of the parameters ``cfg`` implies (no allocation)."""
  abstract = families.make_family(cfg).abstract_params()
  return {path: tuple(leaf.shape) for path, leaf in flatten(dict(abstract)).items()}


@contextlib.contextmanager
def fresh_folder(target: str, what: str = "--workdir"):
  """Yields a temporary folder beside ``target`` that becomes ``target`` when the block
  ends without an error (removed otherwise): nothing half-written is ever at
  ``target``. ``target`` must not exist or be empty (WeightsError otherwise)."""
  if os.path.exists(target) and not os.path.isdir(target):
    raise WeightsError(f"{what}={target} is a file, not a folder.")
  if os.path.isdir(target) and os.listdir(target):
    raise WeightsError(f"{what}={target} already holds files; give a new or empty folder "
                       "(nothing is overwritten).")
  parent = os.path.dirname(os.path.abspath(target))
  os.makedirs(parent, exist_ok=True)
  tmp = os.path.join(parent, f".{os.path.basename(os.path.abspath(target))}.partial-"
                     f"{os.getpid()}")
  shutil.rmtree(tmp, ignore_errors=True)
  try:
    os.makedirs(tmp)
    yield tmp
    if os.path.isdir(target):
      os.rmdir(target)           # empty (checked first); an OSError if it no longer is
    os.rename(tmp, target)
  except BaseException as e:
    shutil.rmtree(tmp, ignore_errors=True)
    if isinstance(e, OSError) or is_disk_full(e):
      raise io_error(e, target, None) from None
    raise


def write_run(cfg, params, workdir: str, step: int, provenance: Dict[str, Any]) -> None:
  """Writes the run as ``train.py`` would at ``step``: config.json and a checkpoint whose
  params and EMA params are ``params`` (:func:`fresh_folder`: all or nothing)."""
  family = families.make_family(cfg)
  t = cfg.training
  params = jax.tree.map(jnp.asarray, params)
  state = create_train_state(params, optim.make_optimizer(cfg.optim), seed=t.seed,
                             ema_decay=t.ema_decay, loss_hparams=family.loss_hparams())
  state = state.replace(step=jnp.asarray(step, jnp.int32))
  with fresh_folder(workdir) as tmp:
    write_config(cfg, tmp)
    ckpt = Checkpointer(tmp, keep=t.keep_checkpoints)
    try:
      ckpt.save(step, state)
    finally:
      ckpt.close()
    with open(os.path.join(tmp, PROVENANCE), "w", encoding="utf-8") as f:
      json.dump(provenance, f, indent=2)


# ---------------------------------------------------------------------------
# NCSN / NCSNv2 releases (the official runners' checkpoint*.pth)
# ---------------------------------------------------------------------------

# The config file of a release, by (architecture, the release's data.dataset / category).
NCSN_RELEASES = {
    ("ncsn", "CIFAR10"): "configs.ncsn.cifar10", ("ncsn", "MNIST"): "configs.ncsn.mnist",
    ("ncsnv2", "CIFAR10"): "configs.ncsn.ncsnv2_cifar10",
    ("ncsnv2", "CELEBA"): "configs.ncsn.ncsnv2_celeba",
    ("ncsnv2_deeper", "church_outdoor"): "configs.ncsn.ncsnv2_church",
    ("ncsnv2_deeper", "bedroom"): "configs.ncsn.ncsnv2_bedroom",
    ("ncsnv2_deepest", "FFHQ"): "configs.ncsn.ncsnv2_ffhq",
}
RELEASE_YML = "config.yml"


def is_torch_checkpoint(src: str) -> bool:
  """A single PyTorch file (``checkpoint*.pth``), as the NCSN / NCSNv2 runners save."""
  return os.path.isfile(src) and src.endswith((".pth", ".pt", ".pth.tar", ".ckpt"))


def _ncsn_base_config(src: str, config, config_name: Optional[str]):
  """(config, where it came from): ``config`` if given, else the project's config of the
  release named by the ``config.yml`` beside the checkpoint (read without running its
  python tags)."""
  if config is not None:
    return config, config_name or "the given config"
  yml = os.path.join(os.path.dirname(os.path.abspath(src)), RELEASE_YML)
  if not os.path.isfile(yml):
    raise WeightsError(f"{src}: which release is it? Give --config=configs/ncsn/<dataset>.py, "
                       f"or put the release's {RELEASE_YML} beside the checkpoint.")
  release = ncsn_torch.read_release_config(yml)
  settings = ncsn_torch.release_settings(release)
  data = release.get("data", {})
  key = (settings["architecture"], data.get("category") if data.get("dataset") == "LSUN"
         else data.get("dataset"))
  if key not in NCSN_RELEASES:
    raise WeightsError(f"{yml}: no config of this project for {key[0]} on {key[1]}; give "
                       "--config=FILE.")
  return load_config_module(NCSN_RELEASES[key]), yml


def import_ncsn(src: str, workdir: str, config=None, raw: bool = False,
                config_name: Optional[str] = None) -> Dict[str, Any]:
  """Imports an official NCSN / NCSNv2 checkpoint as a run in ``workdir``.

  The EMA weights by default (NCSNv2 stores them last; ``raw`` for the trained ones).
  The config (``config``, or the one of the release's ``config.yml`` beside the file)
  must build this network (``model.name``, ``model.ngf``, channels, NCSN's number of
  levels) and, where the checkpoint stores its σ ladder (NCSNv2), give the same ladder:
  otherwise one line names the field. Returns what :func:`import_weights` returns.
  """
  if os.path.exists(workdir) and (not os.path.isdir(workdir) or os.listdir(workdir)):
    with fresh_folder(workdir):   # raises its one line before anything is read
      pass
  params, sigmas, meta = ncsn_torch.import_ncsn_checkpoint(src, raw=raw)
  base, config_file = _ncsn_base_config(src, config, config_name)
  cfg = validate(base)
  m, arch = cfg.model, meta["architecture"]
  for field, want, have in (("model.name", arch, m.name), ("model.ngf", meta["ngf"], m.ngf),
                            ("model.out_channels", meta["channels"], m.out_channels)):
    if want != have:
      raise WeightsError(f"{src} holds {arch} (ngf {meta['ngf']}, {meta['channels']} "
                         f"channels); the config has {field}={have!r}: set it to {want!r}.")
  if arch == "ncsn" and meta["num_classes"] != cfg.diffusion.num_timesteps:
    raise WeightsError(f"{src} embeds {meta['num_classes']} noise levels; the config has "
                       f"diffusion.num_timesteps={cfg.diffusion.num_timesteps}.")
  if sigmas is not None:
    _, expected = families.make_family(cfg).process.host_marginal()
    mismatch = ncsn_torch.ladder_mismatch(sigmas, expected)
    if mismatch is not None:
      raise WeightsError(f"{src}: {mismatch}; set diffusion.sigma_min, sigma_max and "
                         "num_timesteps to the release's ladder.")
  step = int(meta.get("step") or 0)
  num_params = int(meta["num_parameters"])
  provenance = {
      "source": os.path.abspath(src), "format": "NCSN/NCSNv2 PyTorch checkpoint",
      "weights_file": os.path.abspath(src), "sha256": sha256(src),
      "weights": meta["weights"], "step": step, "config_file": config_file,
      "num_params": num_params,
      "network": {"name": arch, "ngf": meta["ngf"], "channels": meta["channels"],
                  "num_levels": cfg.diffusion.num_timesteps,
                  "image_size": cfg.data.image_size},
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
  }
  write_run(cfg, params, workdir, step, provenance)
  return dict(provenance, workdir=workdir, notes=[])

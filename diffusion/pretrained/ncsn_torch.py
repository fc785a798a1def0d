"""NCSN and NCSNv2 releases (PyTorch) as this project's RefineNet parameters, without torch.

A pure mapping: it reads a checkpoint (through the restricted unpickler of
:mod:`diffusion.io.torch_pickle`, so a crafted file never runs code) or a release's
``config.yml`` (YAML whose python-object tags are read as plain mappings, never
constructed), and returns arrays and dicts; it writes nothing.

What the official runners save (``torch.save(states, 'checkpoint.pth')``):

* NCSN (ermongroup/ncsn ``runners/anneal_runner.py``): ``[state_dict, optimizer]``.
* NCSNv2 (ermongroup/ncsnv2 ``runners/ncsn_runner.py``): ``[state_dict, optimizer,
  epoch, step]``, plus the EMA shadow last when ``model.ema`` is on (every released
  config).

The network's ``state_dict`` comes from a ``DataParallel`` wrapper, so its keys start
with ``module.``; NCSNv2's also holds the ``sigmas`` buffer (the ladder, descending,
float32). The EMA shadow (``EMAHelper.state_dict()``) is keyed by the inner module's
parameter names: no prefix, no buffers.

Names map one to one onto :class:`diffusion.models.refinenet.RefineNet`'s tree: a
ModuleList index joins its list's name (``res2.0.conv2.conv.weight`` ->
``res2_0/conv2/conv/kernel``); conv weights [out, in, kh, kw] become kernels
[kh, kw, in, out] (NCHW -> NHWC); NCSN's ``...embed.weight`` [L, 3C] becomes
``.../embed`` unchanged (rows in the official level order, 0 = largest σ, columns
[γ | α | β]); NCSNv2's IN++ ``alpha``, ``gamma``, ``beta`` keep their names.
"""

import functools
import re
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
import yaml

from diffusion.errors import ConfigError
from diffusion.io import untrusted
from diffusion.io.torch_pickle import read_torch_checkpoint

PREFIX = "module."
SIGMAS_KEY = "sigmas"

# The official runners pick the network from the dataset (ncsnv2 runners/ncsn_runner.py
# ``get_model``; NCSN has one network).
DATASET_ARCHITECTURE = {"CIFAR10": "ncsnv2", "CELEBA": "ncsnv2", "LSUN": "ncsnv2_deeper",
                        "FFHQ": "ncsnv2_deepest"}


class NCSNWeightsError(ConfigError):
  """A file that is not an NCSN / NCSNv2 release we can read (one line)."""


# ---------------------------------------------------------------------------
# Checkpoint object -> one state dict
# ---------------------------------------------------------------------------

def _is_tensor_dict(obj) -> bool:
  return (isinstance(obj, Mapping) and bool(obj)
          and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()))


def select_weights(obj: Any, *, raw: bool = False, source: str = "checkpoint"
                   ) -> Tuple[Dict[str, np.ndarray], Optional[np.ndarray], Dict[str, Any]]:
  """The network weights inside a loaded release object.

  Args:
    obj: what :func:`read_torch_checkpoint` returned: the runners' list
      ``[state_dict, optimizer, (epoch, step,) (ema)]``, or a bare state dict.
    raw: take the trained weights even when an EMA shadow is stored.
    source: the file's name, for messages.

  Returns:
    (weights, sigmas, info): weights {official parameter name without ``module.``:
    float32 array}; the stored ``sigmas`` buffer as saved (descending) or None;
    info {'weights': 'ema' | 'raw', 'has_ema', 'epoch', 'step'} (None where not stored).

  Raises:
    NCSNWeightsError: not the runners' layout, or an EMA whose names differ from the
      network's.
  """
  if _is_tensor_dict(obj):
    states, state_dict = [obj], obj
  elif isinstance(obj, (list, tuple)) and obj and _is_tensor_dict(obj[0]):
    states, state_dict = list(obj), obj[0]
  else:
    raise NCSNWeightsError(f"{source}: not an NCSN/NCSNv2 checkpoint (expected the runners' "
                           f"list [state_dict, optimizer, ...], found {type(obj).__name__})")
  net = {k[len(PREFIX):] if k.startswith(PREFIX) else k: np.asarray(v)
         for k, v in state_dict.items()}
  sigmas = net.pop(SIGMAS_KEY, None)
  # NCSNv2 appends the EMA shadow after [state_dict, optimizer, epoch, step].
  ema = states[-1] if len(states) >= 5 and _is_tensor_dict(states[-1]) else None
  scalar = lambda i: (int(states[i]) if len(states) > i  # noqa: E731
                      and isinstance(states[i], (int, np.integer)) else None)
  info = {"has_ema": ema is not None, "epoch": scalar(2), "step": scalar(3),
          "weights": "raw"}
  if ema is not None and not raw:
    ema = {k: np.asarray(v) for k, v in ema.items()}
    if set(ema) != set(net):
      extra, missing = sorted(set(ema) - set(net)), sorted(set(net) - set(ema))
      raise NCSNWeightsError(f"{source}: the EMA state does not name the network's parameters "
                             f"(only in EMA: {extra[:3]}, only in the network: {missing[:3]})")
    net, info["weights"] = ema, "ema"
  for k, v in net.items():
    if v.dtype != np.float32:
      raise NCSNWeightsError(f"{source}: parameter {k} is {v.dtype}, expected float32")
  return net, (None if sigmas is None else np.asarray(sigmas)), info


# ---------------------------------------------------------------------------
# Architecture and names
# ---------------------------------------------------------------------------

def infer_architecture(weights: Mapping[str, np.ndarray], sigmas: Optional[np.ndarray] = None,
                       source: str = "checkpoint") -> Dict[str, Any]:
  """The network a state dict belongs to, from its names and shapes.

  Returns:
    {'architecture': 'ncsn' | 'ncsnv2' | 'ncsnv2_deeper' | 'ncsnv2_deepest', 'ngf',
    'channels', 'num_classes'}: num_classes is L for NCSN (rows of the conditional
    norm table), len(sigmas) for NCSNv2 when the buffer is stored, else None.
  """
  if "begin_conv.weight" not in weights:
    raise NCSNWeightsError(f"{source}: no begin_conv.weight: not an NCSN/NCSNv2 RefineNet")
  out_ch, in_ch = weights["begin_conv.weight"].shape[:2]
  if "normalizer.embed.weight" in weights:
    arch, num_classes = "ncsn", int(weights["normalizer.embed.weight"].shape[0])
  elif "normalizer.alpha" in weights:
    if any(k.startswith("res31.") for k in weights):
      arch = "ncsnv2_deepest"
    elif any(k.startswith("res5.") for k in weights):
      arch = "ncsnv2_deeper"
    else:
      arch = "ncsnv2"
    num_classes = None if sigmas is None else int(np.asarray(sigmas).shape[0])
  else:
    raise NCSNWeightsError(f"{source}: its final normalisation is neither NCSN's conditional "
                           "IN++ (normalizer.embed) nor NCSNv2's IN++ (normalizer.alpha)")
  return {"architecture": arch, "ngf": int(out_ch), "channels": int(in_ch),
          "num_classes": num_classes}


_LIST_INDEX = re.compile(r"^\d+$")


def flax_path(name: str, value: np.ndarray) -> Tuple[Tuple[str, ...], np.ndarray]:
  """One official parameter as (our tree path, our array).

  ``refine2.adapt_convs.0.1_2_conv.weight`` [o, i, 3, 3] ->
  (('refine2', 'adapt_convs_0', '1_2_conv', 'kernel'), [3, 3, i, o]).
  """
  parts = name.split(".")
  path = []
  for p in parts[:-1]:
    if _LIST_INDEX.match(p) and path:
      path[-1] = f"{path[-1]}_{p}"       # a ModuleList entry: res1.0 -> res1_0
    else:
      path.append(p)
  leaf = parts[-1]
  if leaf == "weight" and value.ndim == 4:
    return tuple(path) + ("kernel",), np.ascontiguousarray(value.transpose(2, 3, 1, 0))
  if leaf == "weight" and path and path[-1] == "embed" and value.ndim == 2:
    return tuple(path), value               # the [L, 3C] table is the leaf ``embed``
  if leaf in ("bias", "alpha", "gamma", "beta") and value.ndim == 1:
    return tuple(path) + (leaf,), value
  raise NCSNWeightsError(f"parameter {name} {tuple(value.shape)} is not part of an "
                         "NCSN/NCSNv2 RefineNet")


def to_flax_params(weights: Mapping[str, np.ndarray]) -> Dict[str, Any]:
  """Official names -> our nested parameter dict (float32 numpy leaves)."""
  params: Dict[str, Any] = {}
  for name, value in weights.items():
    path, arr = flax_path(name, np.asarray(value, np.float32))
    node = params
    for p in path[:-1]:
      node = node.setdefault(p, {})
    if path[-1] in node:
      raise NCSNWeightsError(f"two parameters map to {'/'.join(path)}")
    node[path[-1]] = arr
  return params


def _flat(tree, prefix=()) -> Dict[Tuple[str, ...], Tuple[int, ...]]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(_flat(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = tuple(v.shape)
  return out


@functools.lru_cache(maxsize=8)
def _parameter_shapes(module) -> Dict[Tuple[str, ...], Tuple[int, ...]]:
  """{path: shape} of ``module``'s parameters (``jax.eval_shape`` of its init: nothing is
  computed; kept for the few networks a process imports)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  factor = 8  # any size divisible by every network's down-sampling
  x = jax.ShapeDtypeStruct((1, factor, factor, module.out_channels), jnp.float32)
  cond = jax.ShapeDtypeStruct((1,), jnp.float32)
  return _flat(jax.eval_shape(module.init, jax.random.PRNGKey(0), x, cond)["params"])


def check_params(params: Mapping[str, Any], module, source: str = "checkpoint") -> None:
  """Raises NCSNWeightsError unless ``params`` has exactly ``module``'s names and shapes
  (``jax.eval_shape`` of its init: nothing is computed)."""
  want = _parameter_shapes(module)
  have = _flat(params)
  missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
  if missing or extra:
    raise NCSNWeightsError(
        f"{source}: the weights do not fit the network (missing "
        f"{['/'.join(p) for p in missing[:3]]}{'...' if len(missing) > 3 else ''}, unexpected "
        f"{['/'.join(p) for p in extra[:3]]}{'...' if len(extra) > 3 else ''})")
  wrong = [p for p in want if want[p] != have[p]]
  if wrong:
    p = wrong[0]
    raise NCSNWeightsError(f"{source}: {'/'.join(p)} has shape {have[p]}, the network "
                           f"expects {want[p]} ({len(wrong)} such)")


def import_ncsn_checkpoint(path: str, *, raw: bool = False
                           ) -> Tuple[Dict[str, Any], Optional[np.ndarray], Dict[str, Any]]:
  """An NCSN / NCSNv2 release as (params, sigmas, meta).

  Args:
    path: a ``checkpoint*.pth`` the official runners saved (either PyTorch file format).
    raw: the trained weights instead of the EMA shadow (which is the default when the
      file stores one; NCSN's files never do).

  Returns:
    params: our parameter tree for :func:`diffusion.models.refinenet.make_refinenet`
      (``meta['architecture']``, ngf, channels, num_classes), float32 numpy leaves; pass
      as ``{'params': params}``.
    sigmas: NCSNv2's stored ladder in this project's order (ascending, float64 holding
      the stored float32 values), or None (NCSN stores none).
    meta: infer_architecture's keys plus 'weights' ('ema' | 'raw'), 'has_ema', 'epoch',
      'step' (None where not stored) and 'num_parameters'.

  Raises:
    NCSNWeightsError: the file is not such a release (one line); pickle.UnpicklingError
      from the restricted reader for a pickle naming anything but tensors and plain data.
  """
  from diffusion.models.refinenet import make_refinenet  # pylint: disable=import-outside-toplevel
  obj = read_torch_checkpoint(path)
  weights, sigmas, info = select_weights(obj, raw=raw, source=path)
  arch = infer_architecture(weights, sigmas, source=path)
  params = to_flax_params(weights)
  module = make_refinenet(arch["architecture"], arch["ngf"], arch["channels"],
                          arch["num_classes"] or 1)
  check_params(params, module, source=path)
  ladder = None
  if sigmas is not None:
    s = np.asarray(sigmas, np.float64)
    if s.ndim != 1 or len(s) < 2 or not np.all(np.diff(s) < 0) or s[-1] <= 0:
      raise NCSNWeightsError(f"{path}: the stored sigmas are not a positive descending ladder")
    ladder = s[::-1].copy()
  meta = dict(arch, **info, num_parameters=int(sum(v.size for v in weights.values())))
  return params, ladder, meta


def ladder_mismatch(stored: np.ndarray, expected: np.ndarray, rtol: float = 1e-6
                    ) -> Optional[str]:
  """None when two ascending ladders agree to ``rtol`` (the release stores float32);
  else one line saying how they differ (for the importer's refusal)."""
  stored, expected = np.asarray(stored, np.float64), np.asarray(expected, np.float64)
  if stored.shape != expected.shape:
    return f"the checkpoint has {len(stored)} noise levels, the config {len(expected)}"
  err = np.abs(stored - expected) / expected
  if np.max(err) > rtol:
    i = int(np.argmax(err))
    return (f"sigma[{i}] is {stored[i]:.7g} in the checkpoint and {expected[i]:.7g} in the "
            f"config (ladders {stored[0]:.4g}..{stored[-1]:.4g} vs "
            f"{expected[0]:.4g}..{expected[-1]:.4g})")
  return None


# ---------------------------------------------------------------------------
# The release's config.yml
# ---------------------------------------------------------------------------

class _PlainLoader(yaml.SafeLoader):
  """SafeLoader that reads any tag it does not know (``!!python/object:argparse.Namespace``,
  ``!!python/tuple``, ``!!python/object/apply:...``) as the plain mapping, list or
  string under it: nothing named by a tag is imported or called."""


def _plain(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node):
  del tag_suffix
  if isinstance(node, yaml.MappingNode):
    return loader.construct_mapping(node, deep=True)
  if isinstance(node, yaml.SequenceNode):
    return loader.construct_sequence(node, deep=True)
  return loader.construct_scalar(node)


# The empty prefix matches every tag without its own constructor; the standard YAML
# tags keep theirs (SafeLoader checks exact tags first).
_PlainLoader.add_multi_constructor("", _plain)
# YAML 1.1 reads 1e-2 (no dot) as text; argparse's floats dumped by yaml.dump have one, but a
# release edited by hand may not: read such exponents as numbers.
_PlainLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+(?:\.[0-9]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def read_release_config(path: str) -> Dict[str, Any]:
  """A release's ``config.yml`` (``yaml.dump`` of an argparse.Namespace tree) as nested
  plain dicts. Raises NCSNWeightsError for a file that is not a YAML mapping."""
  with open(path, "r", encoding="utf-8") as f:
    try:
      cfg = yaml.load(f, Loader=_PlainLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
      raise NCSNWeightsError(f"{path}: not readable YAML ({str(e).splitlines()[0]})") from e
  if not isinstance(cfg, dict):
    raise NCSNWeightsError(f"{path}: not a config mapping (found {type(cfg).__name__})")
  return cfg


# The fields of a release's config.yml that this importer reads, and what each must be.
MAX_LEVELS = 100_000   # NCSNv2's FFHQ has 2,311; a bigger count is a damaged file
_RELEASE_FIELDS = {
    "model.sigma_begin": untrusted.number(positive=True),
    "model.sigma_end": untrusted.number(positive=True),
    "model.num_classes": untrusted.integer(1, MAX_LEVELS),
}
_OPTIONAL_FIELDS = {
    "data.dataset": untrusted.optional(untrusted.text()),
    "data.category": untrusted.optional(untrusted.text()),
    "data.image_size": untrusted.optional(untrusted.integer(1)),
    "data.channels": untrusted.optional(untrusted.integer(1)),
    "model.ngf": untrusted.optional(untrusted.integer(1)),
    "model.sigma_dist": untrusted.text(("geometric", "uniform")),
    "model.ema": untrusted.optional(untrusted.BOOLEAN),
    "model.ema_rate": untrusted.optional(untrusted.number(0.0, 1.0)),
    "sampling.step_lr": untrusted.optional(untrusted.number(positive=True)),
    "sampling.n_steps_each": untrusted.optional(untrusted.integer(1)),
    "sampling.denoise": untrusted.optional(untrusted.BOOLEAN),
    "optim.lr": untrusted.optional(untrusted.number(positive=True)),
    "training.batch_size": untrusted.optional(untrusted.integer(1)),
    "training.n_iters": untrusted.optional(untrusted.integer(0)),
}


def release_sigmas(model_cfg: Mapping[str, Any], source: str = "config.yml") -> np.ndarray:
  """The official ladder of a config's ``model`` section, ascending float64 (geometric:
  exp(linspace(log σ_begin, log σ_end, L)) reversed; 'uniform': linspace reversed).
  Each field is checked first (NCSNWeightsError naming ``source`` and the field)."""
  model = {"model": model_cfg}
  begin, end, n = (untrusted.get(model, name, source, expect, error=NCSNWeightsError)
                   for name, expect in _RELEASE_FIELDS.items())
  dist = untrusted.get(model, "model.sigma_dist", source, _OPTIONAL_FIELDS["model.sigma_dist"],
                       "geometric", error=NCSNWeightsError)
  if dist == "geometric":
    s = np.exp(np.linspace(np.log(begin), np.log(end), n))
  else:
    s = np.linspace(begin, end, n)
  return s[::-1].copy()


def release_settings(cfg: Mapping[str, Any], source: str = "config.yml") -> Dict[str, Any]:
  """What a release's config says in this project's terms.

  Args:
    cfg: :func:`read_release_config`'s dict (NCSN's ``anneal.yml`` layout or NCSNv2's).
    source: the file, for messages.

  Returns:
    {'architecture', 'dataset', 'category', 'image_size', 'channels', 'ngf',
    'num_classes', 'sigmas' (ascending), 'sigma_min', 'sigma_max', 'ema', 'ema_rate',
    'step_lr', 'n_steps_each', 'denoise', 'lr', 'batch_size', 'n_iters'}; sampler
    fields are None where the config has no ``sampling`` section (NCSN, whose runner
    hard-codes 100 steps per level and step_lr 2e-5).

  Raises:
    NCSNWeightsError: one line naming ``source``, the field, what it holds and what it
      must be (a section that is not a mapping, a missing or mistyped field).
  """
  value = {name: untrusted.get(cfg, name, source, expect, None, error=NCSNWeightsError)
           for name, expect in _OPTIONAL_FIELDS.items()}
  model = untrusted.get(cfg, "model", source, untrusted.MAPPING, error=NCSNWeightsError)
  if "normalization" in model or "sigma_dist" in model:   # NCSNv2's layout
    arch = DATASET_ARCHITECTURE.get(value["data.dataset"])
    if arch is None:
      raise NCSNWeightsError(f"{source}: data.dataset={value['data.dataset']!r}: the NCSNv2 "
                             "runner builds no network for it (it knows "
                             f"{', '.join(DATASET_ARCHITECTURE)})")
  else:
    arch = "ncsn"
  sigmas = release_sigmas(model, source)
  return {
      "architecture": arch, "dataset": value["data.dataset"],
      "category": value["data.category"], "image_size": value["data.image_size"],
      "channels": value["data.channels"], "ngf": value["model.ngf"],
      "num_classes": len(sigmas), "sigmas": sigmas,
      "sigma_min": float(sigmas[0]), "sigma_max": float(sigmas[-1]),
      "ema": bool(value["model.ema"]), "ema_rate": value["model.ema_rate"],
      "step_lr": value["sampling.step_lr"], "n_steps_each": value["sampling.n_steps_each"],
      "denoise": value["sampling.denoise"], "lr": value["optim.lr"],
      "batch_size": value["training.batch_size"], "n_iters": value["training.n_iters"],
  }

"""diffusers' ``UNet2DModel`` of the DDPM family <-> our U-Net: config and state dict.

diffusers (PyTorch) republished the DDPM releases (google/ddpm-cifar10-32,
google/ddpm-{celebahq,church,bedroom,cat}-256 and their ``ddpm-ema-*`` twins) as a
folder with ``config.json`` and ``diffusion_pytorch_model.safetensors`` (or ``.bin``, a
torch pickle). Nothing here imports torch or diffusers: safetensors files are read
with the ``safetensors`` package's numpy API, pickles with the project's restricted
reader (:mod:`diffusion.io.torch_pickle`).

The same network (checked against diffusers with random weights: 35,746,307
parameters at CIFAR-10 size, ε equal to float32 round-off) when the config says:

* ``time_embedding_type='positional'``, ``flip_sin_to_cos=False``, ``freq_shift=1``:
  DDPM's ``get_timestep_embedding``, [sin | cos] with frequencies
  exp(−ln(10⁴)·i/(half − 1)) (diffusers divides by ``half − freq_shift``);
* ``downsample_padding=0``: diffusers then pads (0, 1, 0, 1) before its stride-2 3x3
  conv, which is TF's "SAME" padding for even sizes (all of it on the high side), as
  ``nn.Conv(padding='SAME')`` here; ``downsample_padding=1`` pads both sides: another
  network;
* ``norm_num_groups=32``, ``norm_eps=1e-6``, ``act_fn='silu'`` (swish);
* ``attention_head_dim=null`` (one head of all C channels, softmax scale C^-½); diffusers
  fills an absent field with 8 channels per head, which is C/8 heads: another network;
* block types ``DownBlock2D`` / ``AttnDownBlock2D`` and ``UpBlock2D`` / ``AttnUpBlock2D``
  with attention on the same levels both ways, nearest x2 upsampling + 3x3 conv, and
  the skip concatenation [h, skip] (diffusers' ``torch.cat([h, res], dim=1)``).

Names and layouts (torch NCHW weights -> ours, Flax NHWC):

  conv_in / conv_out / *.conv1, conv2, downsamplers.0.conv, upsamplers.0.conv
      weight [C_out, C_in, 3, 3] -> kernel [3, 3, C_in, C_out]   (transpose 2, 3, 1, 0)
  *.conv_shortcut   weight [C_out, C_in, 1, 1] -> nin_shortcut kernel [C_in, C_out]
  time_embedding.linear_1 / linear_2, *.time_emb_proj, attentions.*.to_q/to_k/to_v/to_out.0
      weight [C_out, C_in] -> kernel [C_in, C_out]              (transpose)
  *.norm1, norm2, group_norm, conv_norm_out   weight, bias [C] -> scale, bias [C]

Down level i is ``down_blocks.i``; up level i is ``up_blocks.(L − 1 − i)`` (diffusers
lists the up path in the order it runs). Files saved before diffusers renamed its
attention layers hold ``query``, ``key``, ``value`` and ``proj_attn`` instead of
``to_q``, ``to_k``, ``to_v`` and ``to_out.0`` (as Linear [C, C], or 1x1 conv [C, C, 1, 1]);
both are read, today's names are written.
"""

import json
import math
import os
import re
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from diffusion.io import untrusted
from diffusion.pretrained.network import Path, UNetSpec, WeightsError, check_shape

CONFIG_NAME = "config.json"
SAFETENSORS_NAME = "diffusion_pytorch_model.safetensors"
PICKLE_NAME = "diffusion_pytorch_model.bin"
SCHEDULER_NAME = "scheduler_config.json"
# The diffusers release whose UNet2DModel the export's config.json was checked against.
EXPORT_VERSION = "0.42.1"

# Bounds on the sizes a config.json may give (the releases: 4-6 levels of at most 512
# channels, 2 blocks, 256 px), so that a damaged file is refused rather than built.
MAX_LEVELS, MAX_CHANNELS, MAX_BLOCKS, MAX_SIZE = 8, 4096, 16, 4096

DOWN_TYPES = ("DownBlock2D", "AttnDownBlock2D")
UP_TYPES = ("UpBlock2D", "AttnUpBlock2D")

# Fields that must hold DDPM's value. ``absent`` is diffusers' own default, used when the
# field is missing from config.json; a default that is not DDPM's is refused too.
_FIXED = {
    # field: (DDPM's value(s), diffusers' default when absent, what it means)
    "act_fn": (("silu", "swish"), "silu", "the swish nonlinearity"),
    "center_input_sample": ((False,), False, "the input is x_t itself"),
    "downsample_padding": ((0,), 1, "TF 'SAME' stride-2 padding (0, 1, 0, 1)"),
    "downsample_type": (("conv",), "conv", "a stride-2 3x3 conv"),
    "upsample_type": (("conv",), "conv", "nearest x2 then a 3x3 conv"),
    "flip_sin_to_cos": ((False,), True, "the [sin | cos] order of DDPM's embedding"),
    "freq_shift": ((1,), 0, "frequencies exp(-ln(1e4) i / (half - 1))"),
    "norm_eps": ((1e-6,), 1e-5, "GroupNorm epsilon 1e-6 (tf.contrib group_norm)"),
    "norm_num_groups": ((32,), 32, "GroupNorm with 32 groups"),
    "attn_norm_num_groups": ((None, 32), None, "32 groups in the attention's GroupNorm"),
    "time_embedding_type": (("positional",), "positional", "the sinusoidal embedding"),
    "resnet_time_scale_shift": (("default",), "default",
                                "the embedding is added after conv1 (no scale-shift)"),
    "mid_block_type": (("UNetMidBlock2D",), "UNetMidBlock2D",
                       "ResBlock, attention, ResBlock in the middle"),
    "mid_block_scale_factor": ((1,), 1, "unscaled residual sums"),
    "add_attention": ((True,), True, "attention in the middle block"),
    "class_embed_type": ((None,), None, "no class conditioning"),
    "num_class_embeds": ((None,), None, "no class conditioning"),
}
# Fields read for the sizes (checked below), or harmless.
_SIZES = ("sample_size", "in_channels", "out_channels", "block_out_channels",
          "layers_per_block", "down_block_types", "up_block_types", "attention_head_dim",
          "time_embedding_dim", "dropout", "num_train_timesteps")
# diffusers' defaults of the size fields, used when config.json leaves them out.
_WHEN_ABSENT = {"in_channels": 3, "out_channels": 3, "layers_per_block": 2,
             "attention_head_dim": 8, "time_embedding_dim": None}


def _is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _same(value, want) -> bool:
  """JSON value equality: numbers by value (1 == 1.0, 1e-6 to 1e-9 relative), booleans,
  strings and null exactly."""
  if _is_number(want):
    return _is_number(value) and math.isclose(value, want, rel_tol=1e-9, abs_tol=0.0)
  if isinstance(want, bool) or want is None:
    return value is want
  return isinstance(value, str) and value == want


def _refuse(source: str, field: str, value, why: str):
  try:
    text = json.dumps(value)
  except (TypeError, ValueError):
    text = None
  if text is None or len(text) > 120:
    text = untrusted.describe(value)
  raise WeightsError(f"{source}: {field}={text} is not this network: {why}.")


def spec_from_config(cfg: Mapping[str, Any], source: str) -> UNetSpec:
  """The sizes of a ``UNet2DModel`` config (config.json as a dict), after checking that
  it is DDPM's U-Net.

  Raises:
    WeightsError: one line naming the first field (and its value) that makes it
      another network, or an unknown field.
  """
  name = cfg.get("_class_name", "UNet2DModel")
  if name != "UNet2DModel":
    _refuse(source, "_class_name", name, "only UNet2DModel holds DDPM's U-Net")
  for field in cfg:
    if not field.startswith("_") and field not in _FIXED and field not in _SIZES:
      raise WeightsError(f"{source}: {field}={json.dumps(cfg[field])} is a UNet2DModel "
                         "field this importer does not know; it may change the network, so "
                         "the file is refused.")
  for field, (allowed, default, meaning) in _FIXED.items():
    value = cfg.get(field, default)
    if not any(_same(value, a) for a in allowed):
      absent = "" if field in cfg else " (absent: diffusers' default)"
      _refuse(source, field + absent, value,
              f"DDPM's U-Net needs {' or '.join(json.dumps(a) for a in allowed)}, {meaning}")

  get = lambda f: cfg.get(f, _WHEN_ABSENT.get(f))  # noqa: E731
  boc = cfg.get("block_out_channels")
  if not isinstance(boc, (list, tuple)) or not 0 < len(boc) <= MAX_LEVELS or not all(
      _is_number(c) and math.isfinite(c) and c == int(c) and 0 < c <= MAX_CHANNELS
      for c in boc):
    _refuse(source, "block_out_channels", boc, f"give one channel count in 1..{MAX_CHANNELS} "
            f"per level, 1 to {MAX_LEVELS} levels")
  boc = [int(c) for c in boc]
  ch = boc[0]
  if ch % 32 or any(c % ch for c in boc):
    _refuse(source, "block_out_channels", boc, "every level's channels must be a multiple "
            "of the first, itself a multiple of 32 (GroupNorm groups)")
  num_levels = len(boc)
  down, up = cfg.get("down_block_types"), cfg.get("up_block_types")
  for field, types, allowed in (("down_block_types", down, DOWN_TYPES),
                                ("up_block_types", up, UP_TYPES)):
    if not isinstance(types, (list, tuple)) or len(types) != num_levels or \
        any(t not in allowed for t in types):
      _refuse(source, field, types, f"give {num_levels} of {' / '.join(allowed)}, one per "
              "level of block_out_channels")
  attn_levels = tuple(i for i, t in enumerate(down) if t.startswith("Attn"))
  up_attn = tuple(num_levels - 1 - i for i, t in enumerate(up) if t.startswith("Attn"))
  if sorted(up_attn) != list(attn_levels):
    _refuse(source, "up_block_types", up, "DDPM's U-Net has attention on the same levels "
            f"on the way up as on the way down ({list(down)})")
  layers = get("layers_per_block")
  if not _is_int(layers) or not 1 <= layers <= MAX_BLOCKS:
    _refuse(source, "layers_per_block", layers, f"give an integer in 1..{MAX_BLOCKS}")
  size = cfg.get("sample_size")
  if isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1]:
    size = size[0]
  if not _is_int(size) or not 1 <= size <= MAX_SIZE or size % 2 ** (num_levels - 1):
    _refuse(source, "sample_size", cfg.get("sample_size"), "give a square size divisible by "
            f"2^{num_levels - 1}")
  head_dim = get("attention_head_dim")
  attn_channels = {boc[i] for i in attn_levels} | {boc[-1]}   # the middle block has one too
  if head_dim is not None and (not _is_int(head_dim) or {head_dim} != attn_channels):
    absent = "" if "attention_head_dim" in cfg else " (absent: diffusers' default)"
    _refuse(source, "attention_head_dim" + absent, head_dim, "DDPM's attention has one "
            f"head of all channels ({sorted(attn_channels)}); use null")
  temb = get("time_embedding_dim")
  if temb is not None and (not _is_int(temb) or temb != 4 * ch):
    _refuse(source, "time_embedding_dim", temb, f"DDPM's embedding has 4 x {ch} channels")
  c_in, c_out = get("in_channels"), get("out_channels")
  if not _is_int(c_in) or not 1 <= c_in <= MAX_CHANNELS:
    absent = "" if "in_channels" in cfg else " (absent: diffusers' default)"
    _refuse(source, "in_channels" + absent, c_in, "give the images' channel count, a "
            "positive integer")
  if not _is_int(c_out) or c_out not in (c_in, 2 * c_in):
    _refuse(source, "out_channels", c_out, f"give in_channels ({c_in}) for ε, or twice it "
            "for ε and the learned variance")
  dropout = cfg.get("dropout")
  if dropout is not None and (not isinstance(dropout, (int, float)) or not 0 <= dropout < 1):
    _refuse(source, "dropout", dropout, "give a rate in [0, 1)")
  return UNetSpec(image_size=size, in_channels=c_in, out_channels=c_out, ch=ch,
                  ch_mult=tuple(c // ch for c in boc), num_res_blocks=layers,
                  attn_levels=attn_levels,
                  dropout=None if dropout is None else float(dropout))


def config_from_spec(spec: UNetSpec) -> Dict[str, Any]:
  """The ``UNet2DModel`` config.json of a spec (what :func:`spec_from_config` reads back)."""
  levels = range(spec.num_levels)
  return {
      "_class_name": "UNet2DModel", "_diffusers_version": EXPORT_VERSION,
      "act_fn": "silu", "add_attention": True, "attention_head_dim": None,
      "attn_norm_num_groups": None,
      "block_out_channels": [spec.ch * m for m in spec.ch_mult],
      "center_input_sample": False, "class_embed_type": None,
      "down_block_types": [DOWN_TYPES[i in spec.attn_levels] for i in levels],
      "downsample_padding": 0, "downsample_type": "conv",
      "dropout": 0.0 if spec.dropout is None else spec.dropout,
      "flip_sin_to_cos": False, "freq_shift": 1, "in_channels": spec.in_channels,
      "layers_per_block": spec.num_res_blocks, "mid_block_scale_factor": 1,
      "mid_block_type": "UNetMidBlock2D", "norm_eps": 1e-06, "norm_num_groups": 32,
      "num_class_embeds": None, "num_train_timesteps": None,
      "out_channels": spec.out_channels, "resnet_time_scale_shift": "default",
      "sample_size": spec.image_size, "time_embedding_dim": None,
      "time_embedding_type": "positional",
      "up_block_types": [UP_TYPES[i in spec.attn_levels] for i in reversed(levels)],
      "upsample_type": "conv",
  }


# ---------------------------------------------------------------------------
# Names and layouts
# ---------------------------------------------------------------------------

_RESNET = {"norm1": "norm1", "conv1": "conv1", "temb_proj": "time_emb_proj",
           "norm2": "norm2", "conv2": "conv2", "nin_shortcut": "conv_shortcut"}
_ATTN = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
OLD_ATTENTION = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias"}
_LEVEL = re.compile(r"(down|up)_(\d+)_(block|attn|downsample|upsample)(?:_(\d+))?")


def diffusers_name(path: Path, num_levels: int) -> str:
  """The state-dict name (today's) of one of our parameters, e.g.
  'up_0_attn_1/q/kernel' -> 'up_blocks.3.attentions.1.to_q.weight' (4 levels)."""
  keys = path.split("/")
  top, sub, leaf = keys[0], keys[1] if len(keys) > 2 else None, _LEAF[keys[-1]]
  fixed = {"conv_in": "conv_in", "conv_out": "conv_out", "norm_out": "conv_norm_out",
           "temb_dense0": "time_embedding.linear_1", "temb_dense1": "time_embedding.linear_2"}
  if top in fixed:
    return f"{fixed[top]}.{leaf}"
  if top in ("mid_block_1", "mid_block_2"):
    return f"mid_block.resnets.{int(top[-1]) - 1}.{_RESNET[sub]}.{leaf}"
  if top == "mid_attn_1":
    return f"mid_block.attentions.0.{_ATTN[sub]}.{leaf}"
  m = _LEVEL.fullmatch(top)
  if m is None:
    raise KeyError(path)
  side, level, kind, index = m.groups()
  block = int(level) if side == "down" else num_levels - 1 - int(level)
  if kind == "block":
    return f"{side}_blocks.{block}.resnets.{index}.{_RESNET[sub]}.{leaf}"
  if kind == "attn":
    return f"{side}_blocks.{block}.attentions.{index}.{_ATTN[sub]}.{leaf}"
  return f"{side}_blocks.{block}.{kind}rs.0.conv.{leaf}"


def old_attention_name(name: str) -> Optional[str]:
  """The pre-rename spelling of an attention parameter's name (None for others)."""
  for new, old in OLD_ATTENTION.items():
    if ".attentions." in name and f".{new}." in name:
      return name.replace(f".{new}.", f".{old}.")
  return None


def torch_shape(ours: Tuple[int, ...], name: str) -> Tuple[int, ...]:
  """The torch shape of a tensor whose Flax shape is ``ours``."""
  if len(ours) == 4:
    return (ours[3], ours[2], ours[0], ours[1])
  if len(ours) == 2:
    return (ours[1], ours[0], 1, 1) if ".conv_shortcut." in name else (ours[1], ours[0])
  return tuple(ours)


def to_ours(w: np.ndarray) -> np.ndarray:
  """A torch weight as ours: conv [O, I, kh, kw] -> [kh, kw, I, O]; linear [O, I] -> [I, O];
  vectors unchanged (:func:`to_params` first squeezes a 1x1 conv [O, I, 1, 1] to [O, I])."""
  if w.ndim == 4:
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))
  if w.ndim == 2:
    return np.ascontiguousarray(w.T)
  return w


def to_torch(w: np.ndarray, name: str) -> np.ndarray:
  """Our weight as torch's (the inverse of :func:`to_ours`, 1x1 conv for conv_shortcut)."""
  if w.ndim == 4:
    return np.ascontiguousarray(w.transpose(3, 2, 0, 1))
  if w.ndim == 2:
    w = np.ascontiguousarray(w.T)
    return w[:, :, None, None] if ".conv_shortcut." in name else w
  return np.ascontiguousarray(w)


def to_params(state: Mapping[str, np.ndarray], shapes: Mapping[Path, Tuple[int, ...]],
              num_levels: int, source: str) -> Tuple[Dict[Path, np.ndarray], str]:
  """Our parameters from a diffusers state dict.

  Args:
    state: name -> torch-layout array (either attention naming).
    shapes: our parameter shapes, {path: shape} (``network.flatten`` of the abstract
      parameters of the config).
    num_levels: len(ch_mult).
    source: the file, for messages.
  Returns:
    ({path: float32 array in our layout}, "to_q" or "query": the naming found).
  Raises:
    WeightsError: one line naming the file and the missing, unknown or misshapen tensor.
  """
  out, used, generations = {}, set(), set()
  for path, shape in shapes.items():
    name = diffusers_name(path, num_levels)
    key = name
    if key not in state and old_attention_name(name) in state:
      key = old_attention_name(name)
    if key not in state:
      raise WeightsError(f"{source}: tensor {name} is missing (needed for "
                         f"{path}); the file is not this network.")
    if old_attention_name(name) is not None:
      generations.add("to_q" if key == name else "query")
    w = np.asarray(state[key])
    want = torch_shape(tuple(shape), name)
    if key != name and w.ndim == 4 and w.shape[2:] == (1, 1) and len(want) == 2:
      w = w[:, :, 0, 0]      # the oldest files stored attention projections as 1x1 convs
    w = check_shape(w, want, source, key, path)
    if len(shape) == 2 and w.ndim == 4:
      w = w[:, :, 0, 0]      # conv_shortcut: a 1x1 conv is our Dense
    out[path] = to_ours(w)
    used.add(key)
  unknown = sorted(set(state) - used)
  if unknown:
    raise WeightsError(f"{source}: tensor {unknown[0]} is not part of the network its "
                       f"config describes ({len(unknown)} unknown tensor(s)).")
  return out, "/".join(sorted(generations)) or "none"


def from_params(params: Mapping[Path, np.ndarray], num_levels: int) -> Dict[str, np.ndarray]:
  """A diffusers state dict (today's names, float32 torch layouts) of our parameters."""
  out = {}
  for path, w in params.items():
    name = diffusers_name(path, num_levels)
    out[name] = to_torch(np.asarray(w, np.float32), name)
  return out


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def find_folder(src: str) -> Optional[str]:
  """The folder holding the U-Net's config.json of a diffusers model or pipeline folder
  (``SRC`` itself, or ``SRC/unet`` of a pipeline), None when ``src`` is not one."""
  for folder in (src, os.path.join(src, "unet")):
    if os.path.isfile(os.path.join(folder, CONFIG_NAME)) and (
        os.path.isfile(os.path.join(folder, SAFETENSORS_NAME)) or
        os.path.isfile(os.path.join(folder, PICKLE_NAME))):
      return folder
  return None


def read_config(folder: str) -> Dict[str, Any]:
  path = os.path.join(folder, CONFIG_NAME)
  try:
    with open(path, encoding="utf-8") as f:
      cfg = json.load(f)
  except (OSError, ValueError) as e:
    raise WeightsError(f"{path}: not readable JSON ({e}).") from None
  if not isinstance(cfg, dict):
    raise WeightsError(f"{path}: holds a {type(cfg).__name__}, not a config object.")
  return cfg


def read_scheduler(folder: str) -> Tuple[Optional[str], Optional[Dict[str, Any]]]:
  """The release's ``scheduler_config.json`` (beside the U-Net or in ``../scheduler``)."""
  for path in (os.path.join(folder, SCHEDULER_NAME),
               os.path.join(os.path.dirname(os.path.abspath(folder)), "scheduler",
                            SCHEDULER_NAME)):
    if os.path.isfile(path):
      try:
        with open(path, encoding="utf-8") as f:
          return path, json.load(f)
      except (OSError, ValueError) as e:
        raise WeightsError(f"{path}: not readable JSON ({e}).") from None
  return None, None


def weights_file(folder: str) -> str:
  """The weights of a diffusers folder: the safetensors file if there is one (it cannot
  hold code), else the torch pickle."""
  st = os.path.join(folder, SAFETENSORS_NAME)
  return st if os.path.isfile(st) else os.path.join(folder, PICKLE_NAME)


def read_state_dict(path: str) -> Dict[str, np.ndarray]:
  """name -> numpy array of a ``.safetensors`` file or a torch pickle (restricted reader).

  Raises WeightsError (one line naming the file, and the tensor when it can be told)
  for a truncated, corrupt or unsafe file."""
  if path.endswith(".safetensors"):
    return _read_safetensors(path)
  import pickle  # pylint: disable=import-outside-toplevel
  from diffusion.io import torch_pickle  # pylint: disable=import-outside-toplevel
  try:
    return torch_pickle.load_state_dict(path)
  except (pickle.UnpicklingError, ValueError, OSError) as e:
    text = (str(e).splitlines() or [""])[0]
    raise WeightsError(text if path in text else f"{path}: not readable ({text or e!r})") \
        from None


def _read_safetensors(path: str) -> Dict[str, np.ndarray]:
  import safetensors.numpy  # pylint: disable=import-outside-toplevel
  try:
    return dict(safetensors.numpy.load_file(path))
  except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
    raise WeightsError(f"{path}: {_safetensors_problem(path, e)}") from None


def _safetensors_problem(path: str, error: Exception) -> str:
  """What is wrong with a safetensors file that did not load, naming the tensor when
  the header can be read: 8-byte little-endian header length, a JSON header
  {name: {dtype, shape, data_offsets: [begin, end]}}, then the data."""
  reason = (str(error).splitlines() or [type(error).__name__])[0][:200]
  try:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
      n = int.from_bytes(f.read(8), "little")
      if n <= 0 or 8 + n > size:
        return f"not a readable safetensors file (its header claims {n} bytes; the file has " \
               f"{size}): {reason}"
      header = json.loads(f.read(n))
    available = size - 8 - n
    tensors = sorted((info["data_offsets"], name) for name, info in header.items()
                     if name != "__metadata__")
    for (begin, end), name in tensors:         # in the order of their bytes
      info = header[name]
      if end > available:
        return (f"truncated: tensor {name} needs bytes {begin}..{end} of the data, the file "
                f"holds {available}")
      if info.get("dtype") not in ("F32", "F16", "F64"):
        return f"tensor {name} has dtype {info.get('dtype')}, not float32/16/64: {reason}"
  except (OSError, ValueError, KeyError, TypeError) as e:
    return f"not a readable safetensors file ({reason}; {type(e).__name__})"
  return f"not a readable safetensors file ({reason})"


def write_state_dict(path: str, state: Mapping[str, np.ndarray]) -> None:
  """Writes a safetensors file of float32 arrays (metadata format 'pt', as diffusers')."""
  import safetensors.numpy  # pylint: disable=import-outside-toplevel
  safetensors.numpy.save_file({k: np.ascontiguousarray(v, np.float32) for k, v in
                               state.items()}, path, metadata={"format": "pt"})

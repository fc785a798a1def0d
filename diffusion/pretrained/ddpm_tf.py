"""The DDPM authors' TensorFlow checkpoints (hojonathanho/diffusion), read without TensorFlow.

The released checkpoints (``diffusion_cifar10_model/model.ckpt-790000``,
``diffusion_lsun_{church,bedroom,cat}_model/...``, ``diffusion_celeba_hq_model/...``) are
TF "V2" checkpoints: ``PREFIX.index`` and ``PREFIX.data-00000-of-00001``. They are read
here by a small reader of that format instead of TensorFlow: TensorFlow takes seconds
and a gigabyte to import and is only needed to prepare datasets, the format is
simple and stable, and a reader that checks every size before using it turns a
truncated or corrupt file into one line.

The format (``tensorflow/core/util/tensor_bundle``): the index is an immutable sorted
table (LevelDB's format, uncompressed): a 48-byte footer (two block handles — varint
offset and size — padded, then the magic 0xdb4775248b80fb57), an index block mapping
to data blocks, and data blocks of prefix-compressed (key, value) entries followed by
restart offsets; every block is followed by a type byte and a masked CRC32C. Key ""
holds a ``BundleHeaderProto`` (shard count, endianness); every other key is a tensor
name whose value is a ``BundleEntryProto`` (dtype, shape, shard, offset, size,
masked CRC32C of the bytes). The bytes of a tensor are ``size`` raw little-endian
values at ``offset`` of its shard ``PREFIX.data-SSSSS-of-NNNNN``.

Names (``diffusion_tf/models/unet.py`` under ``name='model'``; ``nn.py``): conv
``W`` [kh, kw, C_in, C_out] and ``b``; dense / nin ``W`` [C_in, C_out] and ``b``;
``tf.contrib.layers.group_norm`` ``gamma`` and ``beta``. These are our layouts, so the
mapping only renames. ``tf.train.ExponentialMovingAverage`` keeps the averages as
``<name>/ExponentialMovingAverage``; the released numbers were computed with them.
"""

import dataclasses
import glob
import os
import re
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from diffusion.pretrained.network import Path, UNetSpec, WeightsError, check_shape

EMA_SUFFIX = "/ExponentialMovingAverage"
OPTIMIZER_SUFFIXES = ("/Adam", "/Adam_1", "/Momentum", "/RMSProp", "/RMSProp_1")
SCOPE = "model"
_TABLE_MAGIC = 0xdb4775248b80fb57
_FOOTER_SIZE = 48
# TensorFlow DataType enum values (types.proto) of the tensors a checkpoint may hold.
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
           9: np.int64, 10: np.bool_, 17: np.uint16, 19: np.float16, 22: np.uint32,
           23: np.uint64}


# ---------------------------------------------------------------------------
# Finding the checkpoint
# ---------------------------------------------------------------------------


def find_prefix(src: str) -> Optional[str]:
  """The checkpoint prefix ``.../model.ckpt-N`` that ``src`` names, or None.

  ``src`` is the prefix itself, its ``.index`` file, or a folder with a ``checkpoint``
  state file (its ``model_checkpoint_path``, looked for in this folder first: the
  path may be of the machine or folder it was written in) or exactly one ``*.index``.
  """
  if src.endswith(".index") and os.path.isfile(src):
    return src[:-len(".index")]
  if os.path.isfile(src + ".index"):
    return src
  if not os.path.isdir(src):
    return None
  state = os.path.join(src, "checkpoint")
  if os.path.isfile(state):
    with open(state, encoding="utf-8", errors="replace") as f:
      m = re.search(r'^model_checkpoint_path:\s*"(.*)"\s*$', f.read(), re.M)
    if m:
      # The checkpoint in this folder first: a copied folder's state file still names
      # the folder it was written in.
      for candidate in (os.path.join(src, os.path.basename(m.group(1))),
                        os.path.join(src, m.group(1)), m.group(1)):
        if os.path.isfile(candidate + ".index"):
          return candidate
  found = sorted(glob.glob(os.path.join(src, "*.index")))
  if len(found) == 1:
    return found[0][:-len(".index")]
  if len(found) > 1:
    raise WeightsError(f"{src} holds {len(found)} checkpoints and no 'checkpoint' file "
                       "naming one; give the prefix, e.g. "
                       f"{found[-1][:-len('.index')]}.")
  return None


# ---------------------------------------------------------------------------
# The index: a sorted table of protocol buffers
# ---------------------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> Tuple[int, int]:
  """A protobuf / LevelDB base-128 varint at ``pos``: (value, next position)."""
  value, shift = 0, 0
  while True:
    if pos >= len(buf) or shift > 63:
      raise ValueError("a varint runs past its buffer")
    byte = buf[pos]
    pos += 1
    value |= (byte & 0x7F) << shift
    if not byte & 0x80:
      return value, pos
    shift += 7


def _proto_fields(buf: bytes) -> List[Tuple[int, int, object]]:
  """A protobuf message's fields as (number, wire type, value: int or bytes)."""
  fields, pos = [], 0
  while pos < len(buf):
    tag, pos = _varint(buf, pos)
    number, wire = tag >> 3, tag & 7
    if wire == 0:
      value, pos = _varint(buf, pos)
    elif wire == 1:
      value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
    elif wire == 2:
      n, pos = _varint(buf, pos)
      value, pos = buf[pos:pos + n], pos + n
    elif wire == 5:
      value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
    else:
      raise ValueError(f"protobuf wire type {wire} is not supported")
    if pos > len(buf):
      raise ValueError("a protobuf field runs past its message")
    fields.append((number, wire, value))
  return fields


@dataclasses.dataclass(frozen=True)
class Entry:
  """Where a tensor's bytes are: ``BundleEntryProto`` (dtype enum, shape, shard, byte
  offset and size, masked CRC32C)."""
  dtype: int
  shape: Tuple[int, ...]
  shard: int
  offset: int
  size: int
  crc32c: Optional[int]
  sliced: bool


def _entry(value: bytes) -> Entry:
  dtype, shape, shard, offset, size, crc, sliced = 0, [], 0, 0, 0, None, False
  for number, _, v in _proto_fields(value):
    if number == 1:
      dtype = v
    elif number == 2:        # TensorShapeProto: repeated Dim dim = 2 {int64 size = 1}
      for n, _, dim in _proto_fields(v):
        if n == 2:
          sizes = [s for k, _, s in _proto_fields(dim) if k == 1]
          shape.append(sizes[0] if sizes else 0)
        elif n == 3 and dim:
          raise ValueError("a tensor of unknown rank")
    elif number == 3:
      shard = v
    elif number == 4:
      offset = v
    elif number == 5:
      size = v
    elif number == 6:
      crc = v
    elif number == 7:
      sliced = True
  return Entry(dtype, tuple(shape), shard, offset, size, crc, sliced)


def _block(data: bytes, offset: int, size: int) -> bytes:
  """A table block (checked: in the file, uncompressed); the 5-byte trailer is skipped."""
  if offset + size + 5 > len(data):
    raise ValueError(f"a block at {offset} (+{size}) runs past the end of the index")
  if data[offset + size] != 0:
    raise ValueError(f"a block is compressed (type {data[offset + size]}); TensorFlow writes "
                     "checkpoint indexes uncompressed")
  return data[offset:offset + size]


def _block_entries(block: bytes):
  """The (key, value) pairs of a table block (keys are prefix-compressed)."""
  if len(block) < 4:
    raise ValueError("a block is shorter than its restart count")
  restarts = int.from_bytes(block[-4:], "little")
  end = len(block) - 4 - 4 * restarts
  if end < 0:
    raise ValueError("a block's restart array is larger than the block")
  pos, key = 0, b""
  while pos < end:
    shared, pos = _varint(block, pos)
    unshared, pos = _varint(block, pos)
    length, pos = _varint(block, pos)
    if shared > len(key) or pos + unshared + length > end:
      raise ValueError("a table entry runs past its block")
    key = key[:shared] + block[pos:pos + unshared]
    pos += unshared
    yield key, block[pos:pos + length]
    pos += length


def read_index(path: str) -> Tuple[Dict[str, Entry], int]:
  """The tensors of a checkpoint index, {name: Entry}, and its shard count."""
  with open(path, "rb") as f:
    data = f.read()
  if len(data) < _FOOTER_SIZE:
    raise ValueError(f"{len(data)} bytes is shorter than a table footer")
  footer = data[-_FOOTER_SIZE:]
  if int.from_bytes(footer[-8:], "little") != _TABLE_MAGIC:
    raise ValueError("no table magic number at the end (not a checkpoint index, or cut short)")
  pos = 0
  _, pos = _varint(footer, pos)       # metaindex handle (offset, size): unused
  _, pos = _varint(footer, pos)
  index_offset, pos = _varint(footer, pos)
  index_size, pos = _varint(footer, pos)
  entries, num_shards = {}, None
  for _, handle in _block_entries(_block(data, index_offset, index_size)):
    offset, p = _varint(handle, 0)
    size, _ = _varint(handle, p)
    for key, value in _block_entries(_block(data, offset, size)):
      if key == b"":                   # BundleHeaderProto
        header = {n: v for n, _, v in _proto_fields(value)}
        num_shards = header.get(1, 0)
        if header.get(2, 0) != 0:
          raise ValueError("the checkpoint is big-endian")
        continue
      entries[key.decode("utf-8")] = _entry(value)
  if num_shards is None:
    raise ValueError("the index has no header entry")
  return entries, num_shards


class CheckpointReader:
  """The tensors of a TF V2 checkpoint ``prefix`` (``prefix.index`` + data shards)."""

  def __init__(self, prefix: str):
    self.prefix = prefix
    index = prefix + ".index"
    try:
      self.entries, num_shards = read_index(index)
    except (OSError, ValueError, UnicodeDecodeError) as e:
      raise WeightsError(f"{index}: not a readable TensorFlow checkpoint index ({e}).") from None
    self.data_files = [f"{prefix}.data-{i:05d}-of-{num_shards:05d}" for i in range(num_shards)]
    for path in self.data_files:
      if not os.path.isfile(path):
        raise WeightsError(f"{path}: missing (the checkpoint's data shard).")

  def shape(self, name: str) -> Tuple[int, ...]:
    return self.entries[name].shape

  def read(self, name: str) -> np.ndarray:
    """Tensor ``name`` as a numpy array (WeightsError naming the file and the tensor when
    its bytes are missing, cut short or of another type than its entry says)."""
    e = self.entries[name]
    path = self.data_files[e.shard] if e.shard < len(self.data_files) else self.prefix
    if e.sliced:
      raise WeightsError(f"{path}: tensor {name} is saved in slices (partitioned variables), "
                         "which this reader does not join.")
    if e.dtype not in _DTYPES:
      raise WeightsError(f"{path}: tensor {name} has TensorFlow dtype {e.dtype}, which this "
                         "reader does not read.")
    dtype = np.dtype(_DTYPES[e.dtype]).newbyteorder("<")
    count = int(np.prod(e.shape, dtype=np.int64))
    if e.size != count * dtype.itemsize:
      raise WeightsError(f"{path}: tensor {name} has {e.size} bytes for {count} values of "
                         f"{dtype.name}; the index is corrupt.")
    with open(path, "rb") as f:
      f.seek(e.offset)
      raw = f.read(e.size)
    if len(raw) != e.size:
      raise WeightsError(f"{path}: tensor {name} is cut short: bytes {e.offset}.."
                         f"{e.offset + e.size} are needed, the file ends at "
                         f"{e.offset + len(raw)} (truncated download?).")
    if e.crc32c is not None and masked_crc32c(raw) != e.crc32c:
      raise WeightsError(f"{path}: tensor {name} fails its CRC32C check (corrupt file).")
    return np.frombuffer(raw, dtype).reshape(e.shape).astype(dtype.newbyteorder("="))

  def global_step(self) -> int:
    """The training step saved with the weights (``global_step``; else the N of the
    prefix ``model.ckpt-N``; else 0)."""
    if "global_step" in self.entries:
      return int(self.read("global_step"))
    m = re.search(r"-(\d+)$", self.prefix)
    return int(m.group(1)) if m else 0


# ---------------------------------------------------------------------------
# CRC32C (Castagnoli), as TensorFlow checks its files
# ---------------------------------------------------------------------------

_POLY = 0x82F63B78   # reflected


def _crc_table() -> np.ndarray:
  table = np.zeros(256, np.uint32)
  for i in range(256):
    c = i
    for _ in range(8):
      c = (c >> 1) ^ (_POLY if c & 1 else 0)
    table[i] = c
  return table


_TABLE = _crc_table()
_CHUNK = 256          # bytes per chunk: chunks are CRC'd side by side, then combined
_IDENTITY = np.array([1 << i for i in range(32)], np.uint32)


def _gf2_times(mat: np.ndarray, vec: np.ndarray) -> np.ndarray:
  """The GF(2) 32x32 matrix ``mat`` (its 32 columns as words) times every word of ``vec``."""
  out = np.zeros_like(vec)
  for i in range(32):
    out ^= np.where((vec >> np.uint32(i)) & np.uint32(1), mat[i], np.uint32(0))
  return out


def _zeros_operator(num_bytes: int) -> np.ndarray:
  """The matrix that runs a CRC register over ``num_bytes`` zero bytes (zlib's
  ``crc32_combine`` construction, for the Castagnoli polynomial)."""
  op = np.array([_POLY] + [1 << i for i in range(31)], np.uint32)   # one zero bit
  for _ in range(3):                                                 # -> one zero byte
    op = _gf2_times(op, op)
  result = _IDENTITY
  while num_bytes:
    if num_bytes & 1:
      result = _gf2_times(op, result)
    op = _gf2_times(op, op)
    num_bytes >>= 1
  return result


_CHUNK_OPERATOR = _zeros_operator(_CHUNK)


def _run(register: np.ndarray, columns: np.ndarray) -> np.ndarray:
  """The (unconditioned) CRC registers after the bytes of ``columns`` [L, n]: byte i of
  stream j is columns[i, j]."""
  for column in columns:
    register = _TABLE[(register ^ column) & np.uint32(0xFF)] ^ (register >> np.uint32(8))
  return register


def crc32c(data: bytes) -> int:
  """CRC32C (Castagnoli) of ``data``.

  The 256-byte chunks are run side by side in numpy, and their CRCs combined pairwise
  with crc(A || B) = Z_len(B) · crc(A) ⊕ crc(B), Z_n the matrix of n zero bytes; an
  odd chunk out at some level is kept and combined at the end, in order."""
  a = np.frombuffer(data, np.uint8)
  n = len(a) // _CHUNK
  crc = 0
  if n:
    columns = np.ascontiguousarray(a[:n * _CHUNK].reshape(n, _CHUNK).T)
    segments = _run(np.full(n, 0xFFFFFFFF, np.uint32), columns) ^ np.uint32(0xFFFFFFFF)
    op, rest = _CHUNK_OPERATOR, []
    while len(segments) > 1:
      if len(segments) % 2:
        rest.insert(0, (segments[-1:], op))   # the last segment: it follows all the others
        segments = segments[:-1]
      segments = _gf2_times(op, segments[0::2]) ^ segments[1::2]
      op = _gf2_times(op, op)
    for segment, op in rest:
      segments = _gf2_times(op, segments) ^ segment
    crc = int(segments[0])
  tail = a[n * _CHUNK:]
  if len(tail):
    register = _run(np.full(1, crc ^ 0xFFFFFFFF, np.uint32), tail[:, None])
    crc = int(register[0]) ^ 0xFFFFFFFF
  return crc


def masked_crc32c(data: bytes) -> int:
  """TensorFlow's stored form of a CRC32C (``crc32c::Mask``)."""
  crc = crc32c(data)
  return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


# ---------------------------------------------------------------------------
# Names: our parameters <-> DDPM's variables
# ---------------------------------------------------------------------------

_LEAF = {"kernel": "W", "bias": "b"}
_NORM_LEAF = {"scale": "gamma", "bias": "beta"}
_LEVEL = re.compile(r"(down|up)_(\d+)_(block|attn|downsample|upsample)(?:_(\d+))?")


def tf_name(path: Path) -> str:
  """DDPM's variable name of one of our parameters, e.g.
  'down_1_attn_0/norm/group_norm/scale' -> 'model/down_1/attn_0/norm/gamma'."""
  keys = path.split("/")
  top, inner = keys[0], keys[1:-1]
  if inner and inner[-1] == "group_norm":        # our Normalize wraps the GroupNorm
    inner, leaf = inner[:-1], _NORM_LEAF[keys[-1]]
  else:
    leaf = _LEAF[keys[-1]]
  if top in ("temb_dense0", "temb_dense1"):
    scope = ["temb", top[len("temb_"):]]
  elif top in ("mid_block_1", "mid_block_2", "mid_attn_1"):
    scope = ["mid", top[len("mid_"):]]
  elif top in ("conv_in", "conv_out", "norm_out"):
    scope = [top]
  else:
    m = _LEVEL.fullmatch(top)
    if m is None:
      raise KeyError(path)
    side, level, kind, index = m.groups()
    scope = [f"{side}_{level}", kind if index is None else f"{kind}_{index}"]
  return "/".join([SCOPE] + scope + inner + [leaf])


def _model_variables(entries: Mapping[str, Entry]) -> Dict[str, Entry]:
  """The network's own variables (no EMA shadows, optimizer slots or counters)."""
  return {n: e for n, e in entries.items() if n.startswith(SCOPE + "/") and
          not n.endswith(EMA_SUFFIX) and not n.endswith(OPTIMIZER_SUFFIXES)}


def spec_from_checkpoint(reader: CheckpointReader, image_size: int) -> UNetSpec:
  """The U-Net's sizes from the variables' shapes (the image size is not stored: it
  comes from the dataset's config).

  ch: conv_in W [3, 3, C, ch]; levels: down_i; blocks: down_0/block_j; ch_mult from
  each level's block_0 conv1 [.., .., C_in, ch * mult]; attention levels: those with
  down_i/attn_0; out channels: conv_out W [.., .., ch, out]."""
  names = _model_variables(reader.entries)
  index = reader.prefix + ".index"

  def shape(name):
    if name not in names:
      raise WeightsError(f"{index}: tensor {name} is missing; not a DDPM U-Net checkpoint "
                         f"(variables under '{SCOPE}/' expected).")
    return names[name].shape

  conv_in = shape(f"{SCOPE}/conv_in/W")
  ch, c_in = conv_in[3], conv_in[2]
  levels = sorted({int(m.group(1)) for n in names
                   for m in [re.match(rf"{SCOPE}/down_(\d+)/", n)] if m})
  blocks = sorted({int(m.group(1)) for n in names
                   for m in [re.match(rf"{SCOPE}/down_0/block_(\d+)/", n)] if m})
  if not levels or levels != list(range(len(levels))) or not blocks:
    raise WeightsError(f"{index}: no down_<level>/block_<i> variables under '{SCOPE}/'; not a "
                       "DDPM U-Net checkpoint.")
  ch_mult = []
  for level in levels:
    out = shape(f"{SCOPE}/down_{level}/block_0/conv1/W")[3]
    if out % ch:
      raise WeightsError(f"{index}: tensor {SCOPE}/down_{level}/block_0/conv1/W has {out} "
                         f"output channels, not a multiple of ch={ch}.")
    ch_mult.append(out // ch)
  attn = tuple(level for level in levels if f"{SCOPE}/down_{level}/attn_0/q/W" in names)
  if image_size % 2 ** (len(levels) - 1):
    raise WeightsError(f"data.image_size={image_size} is not divisible by "
                       f"2^{len(levels) - 1}, as this {len(levels)}-level U-Net needs.")
  return UNetSpec(image_size=image_size, in_channels=c_in,
                  out_channels=shape(f"{SCOPE}/conv_out/W")[3], ch=ch, ch_mult=tuple(ch_mult),
                  num_res_blocks=len(blocks), attn_levels=attn)


def to_params(reader: CheckpointReader, shapes: Mapping[Path, Tuple[int, ...]],
              ema: bool = True) -> Dict[Path, np.ndarray]:
  """Our parameters from the checkpoint: each variable's EMA shadow (``ema``) or the
  variable itself. Every ``model/...`` variable must be used and every parameter found.

  Raises WeightsError naming the file and the tensor (missing, unknown, misshapen)."""
  index = reader.prefix + ".index"
  names = _model_variables(reader.entries)
  out, used = {}, set()
  for path, shape in shapes.items():
    name = tf_name(path)
    if name not in names:
      raise WeightsError(f"{index}: tensor {name} is missing (needed for {path}); "
                         "the checkpoint is not this network.")
    stored = name + EMA_SUFFIX if ema else name
    if stored not in reader.entries:
      raise WeightsError(f"{index}: tensor {stored} is missing; the checkpoint has no EMA "
                         "weights (import its raw weights with --raw).")
    out[path] = check_shape(reader.read(stored), tuple(shape), index, stored, path)
    used.add(name)
  unknown = sorted(set(names) - used)
  if unknown:
    raise WeightsError(f"{index}: tensor {unknown[0]} is not part of the network the config "
                       f"describes ({len(unknown)} unknown variable(s)).")
  return out

"""The score networks of NCSN (Song & Ermon 2019) and NCSNv2 (Song & Ermon 2020).

Both are dilated RefineNets (Lin et al. 2017) on pre-activation residual stages; the
layers are in :mod:`diffusion.models.refinenet_layers`. Written from the official
PyTorch code, read for its facts only (GPL-3.0): NCSN ``CondRefineNetDilated``
(ermongroup/ncsn@7f27f4a ``models/cond_refinenet_dilated.py``); NCSNv2 ``NCSNv2``,
``NCSNv2Deeper``, ``NCSNv2Deepest`` (ermongroup/ncsnv2@1bcea03 ``models/ncsnv2.py``).
The papers' appendices describe these networks; where a detail matters the code is the
reference.
Checked against the official outputs by ``tests/models/test_refinenet.py``.

Layout (``stages`` below; x ngf channels per entry):

  begin_conv 3x3 -> residual stages (2 blocks each: a ``down`` block, then a plain one)
  -> refine blocks from the deepest stage back to the first -> IN++ -> ELU ->
  end_conv 3x3 to the image channels.

  ============  ===================================  ======================
  network       stages (name: width, dilation)       refine blocks
  ============  ===================================  ======================
  NCSN, NCSNv2  res1 1, res2 2 (/2), res3 2 d2,      refine1..4
                res4 2 d4
  Deeper        res1 1, res2 2 (/2), res3 2 (/2),    refine1..5
                res4 4 d2, res5 4 d4
  Deepest       Deeper + res31 2 (/2) after res3     + refine31
  ============  ===================================  ======================

  Stage k's refine block takes [stage k's output, the previous refine output] and
  returns stage k−1's width (its own for the deepest stage, which has no previous
  output). Dilated stages keep the spatial size (see ``ResidualBlock``), so the
  networks down-sample 2x (NCSN/NCSNv2), 4x (Deeper) or 8x (Deepest) in all.

The two flavours (``num_classes``):

* NCSN (``num_classes`` = L > 0): conditional IN++ on the noise level everywhere,
  including every normalisation inside the refine blocks; average pooling in the
  chained residual pooling. The output is the score s(x, σ) itself. MNIST (ngf 64,
  L 10, 1 channel): 7,638,657 parameters; CIFAR-10 / CelebA (ngf 128, 3 channels):
  30,117,635.
* NCSNv2 (``num_classes`` = 0): unconditional IN++ in the residual stages and before
  the last convolution, no normalisation in the refine blocks, max pooling. The
  official forward divides the output h by σ of the level (technique 3); here the
  network returns h and the glue divides (``model.scale_by_sigma=True``), giving
  ε = −σ·(h/σ) = −h. NCSNv2 (CIFAR-10, CelebA 64 px; ngf 128): 29,694,083 parameters;
  Deeper (LSUN church / bedroom / tower): 83,445,379; Deepest (FFHQ): 94,132,611.

Conventions this project's glue (``diffusion/core/model_fn.py``) relies on:

* Input: x is already in [−1, 1]. Both official forwards start with ``2 * x − 1`` on
  their [0, 1] data (``logit_transform`` and ``rescaled`` false in every released
  config); here the glue does it once, with ``model.rescale_inputs=True``, so the
  network must not do it again.
* Noise level: ``cond`` [B] is this project's level index t as a float. The project's
  VE levels ascend (t = 0 is the smallest σ) while the official index y counts from
  the largest σ (``sigmas`` = geomspace(σ_max → σ_min)), so the NCSN network looks up
  y = L − 1 − t. NCSNv2 ignores ``cond``.
* Output: :attr:`RefineNet.output_is_score` says how the glue reads the output:
  True (NCSN) -> ε = −σ_t · output; False (NCSNv2) -> with ``scale_by_sigma``,
  ε = −σ_t · output / σ_t.
"""

import math
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from diffusion.errors import ConfigError
from diffusion.models import refinenet_layers
from diffusion.models.network import DTYPE, DTYPES, OUT_CHANNELS, Network, image_side
from diffusion.options import AT_LEAST_1, Option, declare

Dtype = Any

# (stage name, refine-block name, width in units of ngf, dilation; 0 = none).
# Every stage after the first starts with a ``down`` block.
Stage = Tuple[str, str, int, int]
NCSN_STAGES: Tuple[Stage, ...] = (
    ("res1", "refine4", 1, 0), ("res2", "refine3", 2, 0),
    ("res3", "refine2", 2, 2), ("res4", "refine1", 2, 4))
DEEPER_STAGES: Tuple[Stage, ...] = (
    ("res1", "refine5", 1, 0), ("res2", "refine4", 2, 0), ("res3", "refine3", 2, 0),
    ("res4", "refine2", 4, 2), ("res5", "refine1", 4, 4))
DEEPEST_STAGES: Tuple[Stage, ...] = (
    ("res1", "refine5", 1, 0), ("res2", "refine4", 2, 0), ("res3", "refine3", 2, 0),
    ("res31", "refine31", 2, 0), ("res4", "refine2", 4, 2), ("res5", "refine1", 4, 4))
ARCHITECTURES = {"ncsn": NCSN_STAGES, "ncsnv2": NCSN_STAGES,
                 "ncsnv2_deeper": DEEPER_STAGES, "ncsnv2_deepest": DEEPEST_STAGES}


def downsampling(stages: Sequence[Stage]) -> int:
  """The network's down-sampling factor: 2 per undilated stage after the first."""
  return 2 ** sum(1 for _, _, _, d in stages[1:] if not d)


class RefineNet(nn.Module):
  """NCSN / NCSNv2 RefineNet: x [B, H, W, C], cond [B] -> [B, H, W, out_channels] float32.

  H and W must be divisible by the down-sampling factor of ``stages`` (2, 4 or 8).
  Use :func:`ncsn`, :func:`ncsnv2`, :func:`ncsnv2_deeper`, :func:`ncsnv2_deepest`.

  Attributes:
    ngf: base width (128 in every paper config; 64 for NCSN MNIST).
    out_channels: image channels C.
    num_classes: L > 0: NCSN (conditional IN++ on the level, output = score);
      0: NCSNv2 (unconditional, output = σ·score).
    stages: the stage table (``NCSN_STAGES``, ``DEEPER_STAGES``, ``DEEPEST_STAGES``).
    dtype: compute dtype of the convolutions (normalisation statistics are float32,
      parameters float32, the output float32).
  """
  ngf: int = 128
  out_channels: int = 3
  num_classes: int = 0
  stages: Sequence[Stage] = NCSN_STAGES
  dtype: Dtype = jnp.float32

  @property
  def output_is_score(self) -> bool:
    """True when the output is the score itself (NCSN: ε = −σ·output); False when it is
    σ·score (NCSNv2, read with ``model.scale_by_sigma``)."""
    return self.num_classes > 0

  @nn.compact
  def __call__(self, x: jax.Array, cond: jax.Array | None = None,
               train: bool = False) -> jax.Array:
    """Args:
      x: [B, H, W, C] float, already mapped to [−1, 1] (the official 2x − 1; see the
        module docstring).
      cond: [B] float, this project's ascending level index t (NCSN needs it; NCSNv2
        ignores it).
      train: unused (no dropout, no batch statistics); part of the project's calling
        convention.

    Returns:
      [B, H, W, out_channels] float32: the score (NCSN) or σ·score (NCSNv2).
    """
    del train
    factor = downsampling(self.stages)
    if x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(f"RefineNet input {x.shape}: H and W must be divisible by {factor}")
    nc = self.num_classes
    y = None
    if nc:
      if cond is None:
        raise ValueError("the NCSN RefineNet needs the noise-level index cond [B]")
      # Official index 0 is the largest σ; this project's t = 0 is the smallest.
      t = jnp.round(jnp.asarray(cond, jnp.float32)).astype(jnp.int32)
      y = nc - 1 - t

    h = refinenet_layers.conv(self.ngf, "begin_conv", self.dtype,
                              x.shape[-1])(x.astype(self.dtype))
    layers = []
    for k, (name, _, mult, dilation) in enumerate(self.stages):
      width = mult * self.ngf
      for i in range(2):
        h = refinenet_layers.ResidualBlock(width, down=(k > 0 and i == 0), dilation=dilation,
                                           num_classes=nc, dtype=self.dtype,
                                           name=f"{name}_{i}")(h, y)
      layers.append(h)

    ref = None
    for k in reversed(range(len(self.stages))):
      _, refine_name, _, _ = self.stages[k]
      features = self.stages[max(k - 1, 0)][2] * self.ngf
      inputs = [layers[k]] if ref is None else [layers[k], ref]
      ref = refinenet_layers.RefineBlock(features, end=(k == 0), num_classes=nc,
                                         dtype=self.dtype, name=refine_name)(inputs, y)

    h = nn.elu(refinenet_layers.norm(nc, "normalizer")(ref, y))
    h = refinenet_layers.conv(self.out_channels, "end_conv", self.dtype, self.ngf)(h)
    return h.astype(jnp.float32)


def ncsn(ngf: int = 128, num_classes: int = 10, channels: int = 3,
         dtype: Dtype = jnp.float32) -> RefineNet:
  """NCSN's ``CondRefineNetDilated``: L = ``num_classes`` levels; output = score.

  Paper settings: ngf 128, L 10 (CIFAR-10, CelebA 32 px; 30,117,635 parameters);
  ngf 64, L 10, 1 channel (MNIST 28 px; 7,638,657). The official 28-px variant differs
  only in a padding flag of a dilated block that the code never uses, so one
  network serves both sizes."""
  if num_classes < 1:
    raise ValueError(f"ncsn needs num_classes >= 1 noise levels, got {num_classes}")
  return RefineNet(ngf, channels, num_classes, NCSN_STAGES, dtype)


def ncsnv2(ngf: int = 128, channels: int = 3, dtype: Dtype = jnp.float32) -> RefineNet:
  """NCSNv2's ``NCSNv2`` (CIFAR-10 32 px, CelebA 64 px): unconditional; output = σ·score.
  ngf 128: 29,694,083 parameters."""
  return RefineNet(ngf, channels, 0, NCSN_STAGES, dtype)


def ncsnv2_deeper(ngf: int = 128, channels: int = 3, dtype: Dtype = jnp.float32) -> RefineNet:
  """NCSNv2's ``NCSNv2Deeper`` (LSUN church 96 px, bedroom and tower 128 px).
  ngf 128: 83,445,379 parameters."""
  return RefineNet(ngf, channels, 0, DEEPER_STAGES, dtype)


def ncsnv2_deepest(ngf: int = 128, channels: int = 3, dtype: Dtype = jnp.float32) -> RefineNet:
  """NCSNv2's ``NCSNv2Deepest`` (FFHQ 256 px). ngf 128: 94,132,611 parameters."""
  return RefineNet(ngf, channels, 0, DEEPEST_STAGES, dtype)


def make_refinenet(architecture: str, ngf: int = 128, channels: int = 3,
                   num_classes: int = 10, dtype: Dtype = jnp.float32) -> RefineNet:
  """One of ``ARCHITECTURES`` by name (``num_classes`` is used by 'ncsn' only)."""
  if architecture == "ncsn":
    return ncsn(ngf, num_classes, channels, dtype)
  if architecture not in ARCHITECTURES:
    raise ValueError(f"unknown RefineNet architecture {architecture!r}; "
                     f"choose from {sorted(ARCHITECTURES)}")
  return RefineNet(ngf, channels, 0, ARCHITECTURES[architecture], dtype)


def param_count(module: RefineNet, image_size: int = 32) -> int:
  """Number of parameters, from ``jax.eval_shape`` (nothing is computed or allocated)."""
  x = jax.ShapeDtypeStruct((1, image_size, image_size, module.out_channels), jnp.float32)
  cond = jax.ShapeDtypeStruct((1,), jnp.float32)
  shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), x, cond)
  return sum(math.prod(s.shape) for s in jax.tree_util.tree_leaves(shapes))


# ---------------------------------------------------------------------------
# The four networks as model.name plug-ins (models.NETWORKS)
# ---------------------------------------------------------------------------

NGF = Option("RefineNet base width (NCSN, NCSNv2: 128; NCSN MNIST: 64)", rule=AT_LEAST_1)


def build_ncsn(num_levels: int, *, ngf: int = 128, out_channels: int = 3,
               dtype: str = "float32") -> RefineNet:
  """NCSN's conditional RefineNet, one embedding row per level (``num_levels`` = L)."""
  if num_levels < 1:
    raise ConfigError("model.name='ncsn' embeds each noise level; build it with num_levels="
                      "diffusion.num_timesteps (make_model(..., num_levels=L)).")
  return ncsn(ngf, num_levels, out_channels, DTYPES[dtype])


def _build_v2(stages: Sequence[Stage]) -> Callable[..., RefineNet]:
  def build(*, ngf: int = 128, out_channels: int = 3, dtype: str = "float32") -> RefineNet:
    """An NCSNv2 RefineNet of the ``model.*`` options."""
    return RefineNet(ngf, out_channels, 0, stages, DTYPES[dtype])
  return build


def _fits(name: str, stages: Sequence[Stage]) -> Callable[..., None]:
  """The rules of the RefineNet ``name``: images its strides divide, and read as the
  paper reads them: NCSN's output is the score (the glue makes ε = −σ·s), NCSNv2's is
  σ·score (technique 3, ``model.scale_by_sigma``); both see 2x − 1 of [0, 1] data and
  embed the level index, on the VE process."""
  factor, v2 = downsampling(stages), name != "ncsn"

  def fits(options: Mapping[str, Any], dataset: str, example_shape: Tuple[int, ...],
           process_kind: Optional[str] = None) -> None:
    size = image_side(example_shape)
    if size is None:
      raise ConfigError(f"model.name={name!r} is an image network, but data.dataset="
                        f"{dataset!r} is 2-D toy data; use model.name='mlp'.")
    if size % factor:
      raise ConfigError(f"data.image_size={size} is not divisible by {factor}, the "
                        f"down-sampling of model.name={name!r}; choose another image size.")
    if process_kind is None:   # the network alone (diffusion.make_model): no process known
      return
    if process_kind != "ve":
      raise ConfigError(f"model.name={name!r} is an NCSN score network; it needs the VE "
                        "process (diffusion.variant='ncsn').")
    why = ("NCSNv2 technique 3: output/σ is the score" if v2 else
           "the NCSN network outputs the score itself")
    if options["scale_by_sigma"] != v2:
      raise ConfigError(f"model.scale_by_sigma={options['scale_by_sigma']} is not valid with "
                        f"model.name={name!r}; set it to {v2} ({why}).")
    if not options["rescale_inputs"]:
      raise ConfigError(f"model.rescale_inputs=False is not valid with model.name={name!r}: "
                        "the RefineNets see 2x − 1 of [0, 1] data; set it to True.")
    if options["cond"] != "index":
      raise ConfigError(f"model.cond={options['cond']!r} is not valid with model.name="
                        f"{name!r}, which embeds the level index; set model.cond='index'.")
  return fits


def _network(name: str, description: str, build: Callable[..., RefineNet]) -> Network:
  return Network(description, build,
                 declare(build, ngf=NGF, out_channels=OUT_CHANNELS, dtype=DTYPE),
                 fits=_fits(name, ARCHITECTURES[name]))


NCSN = _network("ncsn", "NCSN's conditional RefineNet (CondRefineNetDilated); outputs the "
                "score", build_ncsn)
NCSNV2 = _network("ncsnv2", "NCSNv2's RefineNet (unconditional); output read as sigma * "
                  "score", _build_v2(NCSN_STAGES))
NCSNV2_DEEPER = _network("ncsnv2_deeper", "NCSNv2's deeper RefineNet (LSUN, 96-128 px)",
                         _build_v2(DEEPER_STAGES))
NCSNV2_DEEPEST = _network("ncsnv2_deepest", "NCSNv2's deepest RefineNet (FFHQ, 256 px)",
                          _build_v2(DEEPEST_STAGES))

"""The convolution switch: every conv site of every model, one kind.

Models build their convolutions through a `ConvSwitch`, so the choice between
the baseline, the training-time blocks and the fused inference form lives in
this one place:

    normal   KxK conv (no bias) -> BN                      `ConvBN`
    acnet    KxK conv+BN + Kx1 conv+BN + 1xK conv+BN       `ACB`
    dbb      Diverse Branch Block (ACNet v2)               `DBB`
    repvgg   KxK conv+BN + 1x1 conv+BN + identity BN       `RepVGG`
    deploy   KxK conv with bias                            `ConvBias`

`TRAINING_BLOCKS` is the table of the re-parameterized kinds: the block each
builds at a site, its online form (`online=True`: the block computed as one
conv, `acnet_jax.blocks.online`), and the `BlockKind` by which fusion
recognises and fuses either. A new kind is one module in `acnet_jax.blocks`
and one entry there.

`dtype` is the computation dtype of every conv and BN the switch builds
(bfloat16 for mixed precision); parameters and batch statistics stay float32,
so fusion and the optimizer see float32 trees either way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax.typing import DTypeLike

from acnet_jax.blocks.acb import ACB, ACB_KIND, ACBOptions, OnlineACB
from acnet_jax.blocks.conv_bn import CONV_BN_KIND, ConvBias, ConvBN
from acnet_jax.blocks.dbb import DBB, DBB_KIND, OnlineDBB
from acnet_jax.blocks.kinds import BlockKind
from acnet_jax.blocks.repvgg import REPVGG_KIND, OnlineRepVGG, RepVGG, RepVGGOptions
from acnet_jax.errors import InputError

# Computation dtypes of a run; parameters are float32 either way.
DTYPES: tuple[str, ...] = ('float32', 'bfloat16')
# A ConvSwitch also computes in float64 (inside jax.enable_x64, with float64
# parameters given to it): for numerics checks against a float64 reference.
SWITCH_DTYPES: tuple[str, ...] = (*DTYPES, 'float64')
# A conv kind by name: 'normal', 'deploy' or a key of TRAINING_BLOCKS.
ConvKind = str


@dataclasses.dataclass(frozen=True)
class TrainingBlock:
  """A re-parameterized conv kind: `build(switch, site)` makes its block for a
  conv site (the keywords of `ConvSiteModule`), `build_online(switch, site)`
  its online form; `kind` fuses either."""

  build: Callable[[ConvSwitch, dict[str, Any]], nn.Module]
  kind: BlockKind
  build_online: Callable[[ConvSwitch, dict[str, Any]], nn.Module]


def build_acb(switch: ConvSwitch, site: dict[str, Any]) -> nn.Module:
  acb = switch.acb
  return ACB(
    **site,
    gamma_init=acb.gamma_init,
    use_affine=acb.use_affine,
    branches=acb.branches,
    impl=acb.impl,
    branch_bn=acb.branch_bn,
  )


def build_online_acb(switch: ConvSwitch, site: dict[str, Any]) -> nn.Module:
  acb = switch.acb
  return OnlineACB(
    **site,
    gamma_init=acb.gamma_init,
    use_affine=acb.use_affine,
    branches=acb.branches,
    branch_bn=acb.branch_bn,
  )


def build_repvgg(switch: ConvSwitch, site: dict[str, Any]) -> nn.Module:
  return RepVGG(**site, quantization_friendly=switch.repvgg.quantization_friendly)


def build_online_repvgg(switch: ConvSwitch, site: dict[str, Any]) -> nn.Module:
  if switch.repvgg.quantization_friendly:
    raise InputError('the quantization-friendly RepVGG block has no online form here')
  return OnlineRepVGG(**site)


TRAINING_BLOCKS: dict[str, TrainingBlock] = {
  'acnet': TrainingBlock(build_acb, ACB_KIND, build_online_acb),
  'dbb': TrainingBlock(
    lambda switch, site: DBB(**site), DBB_KIND, lambda switch, site: OnlineDBB(**site)
  ),
  'repvgg': TrainingBlock(build_repvgg, REPVGG_KIND, build_online_repvgg),
}
TRAINABLE_KINDS: tuple[str, ...] = ('normal', *TRAINING_BLOCKS)
CONV_KINDS: tuple[str, ...] = (*TRAINABLE_KINDS, 'deploy')
# How fusion recognises every block a ConvSwitch builds (not ConvBias: it is
# the deploy form already). The baseline's ConvBN is folded, not re-parameterized.
REPARAMETERIZED_KINDS: tuple[BlockKind, ...] = tuple(b.kind for b in TRAINING_BLOCKS.values())
BLOCK_KINDS: tuple[BlockKind, ...] = (CONV_BN_KIND, *REPARAMETERIZED_KINDS)


def uses_block(kernel_size: int) -> bool:
  """The authors' builders (ACNet's and DBB's): 1x1 convs and large stems
  (7x7 and up) stay normal in every training-time kind."""
  return 1 < kernel_size < 7


def validate_dtype(dtype: DTypeLike) -> jnp.dtype:
  """The canonical dtype of a name ('bfloat16') or a jnp dtype, if it is one of SWITCH_DTYPES."""
  try:
    canonical = jnp.dtype(dtype)
  except TypeError:
    canonical = None
  if canonical is None or canonical.name not in SWITCH_DTYPES:
    raise InputError(f'unknown dtype {dtype!r}; valid: {", ".join(SWITCH_DTYPES)}')
  return canonical


@dataclasses.dataclass(frozen=True)
class ConvSwitch:
  """Builds every conv site of a model as the block of one kind.

  A model calls `conv(features, kernel_size, strides=..., name=...)` and gets a
  module `(x, train) -> y`. `with_bn=False` marks a conv that is not followed
  by its own BN in the baseline (a BN-ReLU-conv pre-activation site): it is a
  plain conv with bias there, the training-time block in the re-parameterized
  kinds, and a conv with bias in `deploy`. `acb` (an `ACBOptions`) shapes
  ACBs only (its `impl` not their online form), `repvgg` (a `RepVGGOptions`)
  the RepVGG blocks. `online` builds each
  re-parameterized kind's online form; `normal` and `deploy` have none and
  build what they always do. `dtype`
  ('float32' or 'bfloat16', or the jnp dtype) is the computation dtype; it is
  stored canonical, so models can hand `conv.dtype` to their dense layers.
  """

  kind: ConvKind = 'normal'
  acb: ACBOptions = dataclasses.field(default_factory=ACBOptions)
  repvgg: RepVGGOptions = dataclasses.field(default_factory=RepVGGOptions)
  online: bool = False
  dtype: DTypeLike = jnp.float32

  def __post_init__(self) -> None:
    if self.kind not in CONV_KINDS:
      raise InputError(f'unknown conv kind {self.kind!r}; valid kinds: {", ".join(CONV_KINDS)}')
    if not isinstance(self.acb, ACBOptions):
      raise InputError(f'acb takes an ACBOptions, got {self.acb!r}')
    if not isinstance(self.repvgg, RepVGGOptions):
      raise InputError(f'repvgg takes a RepVGGOptions, got {self.repvgg!r}')
    object.__setattr__(self, 'dtype', validate_dtype(self.dtype))  # Frozen: set once here.

  def __call__(
    self,
    features: int,
    kernel_size: int,
    *,
    strides: int = 1,
    feature_group_count: int = 1,
    with_bn: bool = True,
    name: str | None = None,
  ) -> nn.Module:
    site = dict(
      features=features,
      kernel_size=kernel_size,
      strides=strides,
      feature_group_count=feature_group_count,
      dtype=self.dtype,
      name=name,
    )
    if self.kind in TRAINING_BLOCKS and uses_block(kernel_size):
      block = TRAINING_BLOCKS[self.kind]
      return (block.build_online if self.online else block.build)(self, site)
    if self.kind == 'deploy' or not with_bn:
      return ConvBias(**site)
    return ConvBN(**site)

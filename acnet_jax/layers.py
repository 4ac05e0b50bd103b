"""The convolution switch: one conv site, five kinds.

Every model builds its convolutions through a `ConvSwitch`, so the choice
between the baseline (`normal`), the training-time blocks (`acnet`, `dbb`,
`repvgg`) and the fused inference form (`deploy`) lives in this one place:

    normal   KxK conv (no bias) -> BN                      `ConvBN`
    acnet    KxK conv+BN + Kx1 conv+BN + 1xK conv+BN       `ACB`
             (or, `branch_bn=False`: (KxK + Kx1 + 1xK conv) -> BN)
    dbb      Diverse Branch Block (ACNet v2)               `DBB` (acnet_jax.dbb)
    repvgg   KxK conv+BN + 1x1 conv+BN + identity BN       `RepVGG` (acnet_jax.repvgg)
    deploy   KxK conv with bias                            `ConvBias`

Parameter names keep the paper's figure visible in a checkpoint:
`ConvBN` holds `conv`/`bn`, `ACB` holds `square`/`square_bn`, `ver`/`ver_bn`,
`hor`/`hor_bn` (without branch BNs: `square`, `ver`, `hor` and one `bn`), and
`ConvBias` holds `conv` (kernel and bias). Each block declares beside it the
`BlockKind` by which fusion recognises and fuses it; `BLOCK_KINDS` is the table.

`dtype` is the computation dtype of every conv and BN the switch builds
(bfloat16 for mixed precision); parameters and batch statistics stay float32,
so fusion and the optimizer see float32 trees either way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal, get_args

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from acnet_jax.block_kinds import BlockKind, BlockVariables
from acnet_jax.dbb import DBB, DBB_KIND
from acnet_jax.errors import InputError
from acnet_jax.kernel_algebra import Conv, add_branches, add_centred
from acnet_jax.primitives import (ConvSiteModule, batch_norm, conv2d, pad_to_centre,
                                  symmetric_padding, torch_default_init)
from acnet_jax.repvgg import REPVGG_KIND, RepVGG

ConvKind = Literal['normal', 'acnet', 'dbb', 'repvgg', 'deploy']
CONV_KINDS: tuple[str, ...] = get_args(ConvKind)
TRAINABLE_KINDS: tuple[str, ...] = tuple(k for k in CONV_KINDS if k != 'deploy')
ACB_BRANCHES: tuple[str, ...] = ('square', 'ver', 'hor')
ACB_SHARED_BN = 'bn'  # The one BN of an ACB without branch BNs.
# How an ACB computes its branches in training; both give the same values
# from the same parameter tree (see `ACB`).
AcbImpl = Literal['branches', 'stacked']
ACB_IMPLS: tuple[str, ...] = get_args(AcbImpl)
# Computation dtypes of a ConvSwitch; parameters are float32 either way.
DTYPES: tuple[str, ...] = ('float32', 'bfloat16')


class ConvBN(ConvSiteModule):
  """The baseline block: KxK conv without bias, then BatchNorm."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    k = self.kernel_size
    y = conv2d(self.features, (k, k), self.strides, self.feature_group_count,
               use_bias=False, name='conv', dtype=self.dtype)(x)
    return batch_norm('bn', dtype=self.dtype)(y, use_running_average=not train)


def conv_bn_to_conv(block: BlockVariables) -> Conv:
  return block.conv_bn('conv', 'bn')


CONV_BN_KIND = BlockKind('ConvBN', skeleton='conv', names=frozenset({'conv', 'bn'}),
                         to_conv=conv_bn_to_conv)


class ACB(ConvSiteModule):
  """Asymmetric Convolution Block (Ding et al. 2019, Fig. 2).

  Sum of KxK, Kx1 and 1xK conv+BN branches. With symmetric padding every
  branch's sliding window is centred on the same input pixel, so in eval mode
  the block equals one KxK conv (see `fusion.block_to_conv`).

  `impl` picks the computation, not the math: 'branches' runs one conv per
  branch; 'stacked' zero-pads the 1D kernels to KxK and runs one conv with
  the branches' kernels side by side (one output channel block per branch):
  fewer, larger ops for more FLOPs. The parameters are the same either way.

  `branch_bn=False` is the paper's ablation "without BN in branches": the
  branches' convs are summed and followed by one BN (`bn`, initial scale 1:
  `gamma_init` is the share of each branch BN). It still fuses exactly.
  """

  gamma_init: float = 1.0
  use_affine: bool = True
  branches: tuple[str, ...] = ACB_BRANCHES
  impl: AcbImpl = 'branches'
  branch_bn: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    validate_branches(self.branches)
    validate_acb_impl(self.impl)
    k = self.kernel_size
    if k % 2 != 1:
      raise InputError(f'ACB needs an odd kernel size, got {k}')
    branch_shapes = {'square': (k, k), 'ver': (k, 1), 'hor': (1, k)}
    if self.impl == 'branches':
      ys = [conv2d(self.features, branch_shapes[branch], self.strides,
                   self.feature_group_count, use_bias=False, name=branch, dtype=self.dtype)(x)
            for branch in self.branches]
    else:
      kernels = [KernelOf(self.features, branch_shapes[branch], self.feature_group_count,
                          name=branch)(x) for branch in self.branches]
      ys = stacked_conv(x.astype(self.dtype),
                        [pad_to_centre(w, k, k).astype(self.dtype) for w in kernels],
                        self.strides, self.feature_group_count)
    if not self.branch_bn:
      summed = sum(ys[1:], ys[0])
      return batch_norm(ACB_SHARED_BN, use_affine=self.use_affine, dtype=self.dtype)(
          summed, use_running_average=not train)
    outputs = [
        batch_norm(f'{branch}_bn', scale=self.gamma_init, use_affine=self.use_affine,
                   dtype=self.dtype)(y, use_running_average=not train)
        for branch, y in zip(self.branches, ys)]
    return sum(outputs[1:], outputs[0])


def acb_to_conv(block: BlockVariables) -> Conv:
  """The branches' kernels centred on the square one; with branch BNs each
  folded with its BN, else their sum folded with the one BN."""
  branches = [b for b in ACB_BRANCHES if b in block.params]
  if block.has(ACB_SHARED_BN):
    return block.fold(add_centred([block.kernel(b) for b in branches]), ACB_SHARED_BN)
  return add_branches([block.conv_bn(b, f'{b}_bn') for b in branches])


ACB_KIND = BlockKind('ACB', skeleton='square', to_conv=acb_to_conv, names=frozenset(
    {*ACB_BRANCHES, *(f'{b}_bn' for b in ACB_BRANCHES), ACB_SHARED_BN}))


class KernelOf(nn.Module):
  """The kernel that `conv2d` would create for `x`, under the same name, shape
  and init, without applying it."""

  features: int
  kernel_shape: tuple[int, int]
  feature_group_count: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    shape = (*self.kernel_shape, x.shape[-1] // self.feature_group_count, self.features)
    return self.param('kernel', torch_default_init, shape)


def stacked_conv(x: jax.Array, kernels: list[jax.Array], strides: int,
                 feature_group_count: int) -> list[jax.Array]:
  """conv(x, w) for every HWIO kernel w of one shape, as a single conv.

  Output channels are grouped: a grouped conv reads the kernels' outputs
  group by group, so the kernels are interleaved per group, not concatenated.
  """
  groups, n = feature_group_count, len(kernels)
  kh, kw, per_group_in, features = kernels[0].shape
  per_group = [w.reshape(kh, kw, per_group_in, groups, features // groups) for w in kernels]
  stacked = jnp.concatenate(per_group, axis=-1).reshape(kh, kw, per_group_in, n * features)
  y = jax.lax.conv_general_dilated(
      x, stacked, (strides, strides), symmetric_padding((kh, kw)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=groups)
  y = y.reshape(*y.shape[:-1], groups, n, features // groups)
  return [y[..., i, :].reshape(*y.shape[:-3], features) for i in range(n)]


class ConvBias(ConvSiteModule):
  """One KxK conv with bias: the deploy form of every block, and the plain
  conv of a pre-activation (BN-ReLU-conv) site in the baseline."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    del train  # No batch statistics; the argument keeps every block alike.
    k = self.kernel_size
    return conv2d(self.features, (k, k), self.strides, self.feature_group_count,
                  use_bias=True, name='conv', dtype=self.dtype)(x)


def validate_branches(branches: Sequence[str]) -> None:
  unknown = set(branches) - set(ACB_BRANCHES)
  if unknown or 'square' not in branches or len(set(branches)) != len(branches):
    raise InputError(
        f'ACB branches must be distinct names from {ACB_BRANCHES} and include '
        f"'square' (the KxK skeleton the others are fused onto); got {tuple(branches)}")


def validate_acb_impl(impl: str) -> None:
  if impl not in ACB_IMPLS:
    raise InputError(f'unknown ACB impl {impl!r}; valid: {", ".join(ACB_IMPLS)}')


def validate_dtype(dtype: DTypeLike) -> jnp.dtype:
  """The canonical dtype of a name ('bfloat16') or a jnp dtype, if it is one of DTYPES."""
  try:
    canonical = jnp.dtype(dtype)
  except TypeError:
    canonical = None
  if canonical is None or canonical.name not in DTYPES:
    raise InputError(f'unknown dtype {dtype!r}; valid: {", ".join(DTYPES)}')
  return canonical


def uses_block(kernel_size: int) -> bool:
  """The authors' builders (ACNet's and DBB's): 1x1 convs and large stems
  (7x7 and up) stay normal in every training-time kind."""
  return 1 < kernel_size < 7


# How fusion recognises every block a ConvSwitch builds (not ConvBias: it is
# the deploy form already). The baseline's ConvBN is not re-parameterized.
REPARAMETERIZED_KINDS: tuple[BlockKind, ...] = (ACB_KIND, DBB_KIND, REPVGG_KIND)
BLOCK_KINDS: tuple[BlockKind, ...] = (CONV_BN_KIND, *REPARAMETERIZED_KINDS)


@dataclasses.dataclass(frozen=True)
class ConvSwitch:
  """Builds every conv site of a model as the block of one kind.

  A model calls `conv(features, kernel_size, strides=..., name=...)` and gets a
  module `(x, train) -> y`. `with_bn=False` marks a conv that is not followed
  by its own BN in the baseline (a BN-ReLU-conv pre-activation site): it is a
  plain conv with bias there, the training-time block in `acnet`, `dbb` and
  `repvgg`, and a conv with bias in `deploy`. The ACB options (gamma_init,
  use_affine, branches, acb_impl, branch_bn) shape ACBs only. `dtype` ('float32' or 'bfloat16', or the jnp dtype) is the
  computation dtype; it is stored canonical, so models can hand
  `conv.dtype` to their dense layers.
  """

  kind: ConvKind = 'normal'
  gamma_init: float = 1.0
  use_affine: bool = True
  branches: tuple[str, ...] = ACB_BRANCHES
  acb_impl: AcbImpl = 'branches'
  branch_bn: bool = True
  dtype: DTypeLike = jnp.float32

  def __post_init__(self) -> None:
    if self.kind not in CONV_KINDS:
      raise InputError(f'unknown conv kind {self.kind!r}; valid kinds: {", ".join(CONV_KINDS)}')
    validate_acb_impl(self.acb_impl)
    validate_branches(self.branches)
    object.__setattr__(self, 'dtype', validate_dtype(self.dtype))  # Frozen: set once here.

  def __call__(self, features: int, kernel_size: int, *, strides: int = 1,
               feature_group_count: int = 1, with_bn: bool = True,
               name: str | None = None) -> nn.Module:
    shape = dict(features=features, kernel_size=kernel_size, strides=strides,
                 feature_group_count=feature_group_count, dtype=self.dtype, name=name)
    if self.kind == 'acnet' and uses_block(kernel_size):
      return ACB(**shape, gamma_init=self.gamma_init, use_affine=self.use_affine,
                 branches=self.branches, impl=self.acb_impl, branch_bn=self.branch_bn)
    if self.kind == 'dbb' and uses_block(kernel_size):
      return DBB(**shape)
    if self.kind == 'repvgg' and uses_block(kernel_size):
      return RepVGG(**shape)
    if self.kind == 'deploy' or not with_bn:
      return ConvBias(**shape)
    return ConvBN(**shape)

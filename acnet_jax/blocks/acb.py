"""Asymmetric Convolution Block (Ding et al., ICCV 2019, Fig. 2): the `acnet` conv kind.

Three branches on one input, summed:

    square   KxK conv -> BN     `square`, `square_bn`
    ver      Kx1 conv -> BN     `ver`, `ver_bn`
    hor      1xK conv -> BN     `hor`, `hor_bn`

With symmetric padding every branch's window is centred on the same input
pixel, so in eval mode the block is one KxK conv: each BN folded into its
conv, the 1D kernels added onto the centre column and row of the square one.

`branch_bn=False` is the paper's ablation "without BN in branches": the
branches' convs are summed and followed by one BN (`bn`).

`OnlineACB` is the online form (`acnet_jax.blocks.online`): the same branch
kernels, each scaled by `square_scale`, `ver_scale`, `hor_scale` in place of
its BN, summed centred into one KxK kernel inside the step, then one conv and
the one BN `bn`. The ablation is that block without scales (`acb_kernel`
builds both kernels), so the online form of the ablation has the ablation's
variables and values, computed as one conv instead of three.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal, get_args

import flax.linen as nn
import jax
import jax.numpy as jnp

from acnet_jax.blocks.algebra import Conv, add_branches, add_centred
from acnet_jax.blocks.kinds import ONE_BN, BlockKind, BlockVariables
from acnet_jax.blocks.online import branch_scale, one_conv_then_bn
from acnet_jax.blocks.primitives import (
  ConvSiteModule,
  KernelOf,
  batch_norm,
  conv2d,
  conv_with_kernel,
  pad_to_centre,
)
from acnet_jax.errors import InputError

ACB_BRANCHES: tuple[str, ...] = ('square', 'ver', 'hor')
# How an ACB computes its branches in training; both give the same values
# from the same parameter tree (see `ACB`).
AcbImpl = Literal['branches', 'stacked']
ACB_IMPLS: tuple[str, ...] = get_args(AcbImpl)


@dataclasses.dataclass(frozen=True)
class ACBOptions:
  """The options of every ACB a `ConvSwitch` builds, checked once here: the
  fields of `ACB` beyond its conv site (`OnlineACB` takes all but `impl`),
  named as in the config (`config.acb`)."""

  gamma_init: float = 1.0
  use_affine: bool = True
  branches: tuple[str, ...] = ACB_BRANCHES
  impl: AcbImpl = 'branches'
  branch_bn: bool = True

  def __post_init__(self) -> None:
    object.__setattr__(self, 'branches', tuple(self.branches))  # Frozen: set once here.
    validate_branches(self.branches)
    validate_acb_impl(self.impl)


class ACB(ConvSiteModule):
  """Sum of KxK, Kx1 and 1xK conv+BN branches.

  `impl` picks the computation, not the math: 'branches' runs one conv per
  branch; 'stacked' zero-pads the 1D kernels to KxK and runs one conv with
  the branches' kernels side by side (one output channel block per branch):
  fewer, larger ops for more FLOPs. The parameters are the same either way.

  `gamma_init` is the initial scale of each branch BN; without branch BNs the
  one BN starts at 1.
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
    branch_shapes = acb_branch_shapes(k)
    if self.impl == 'branches':
      ys = [
        conv2d(
          self.features,
          branch_shapes[branch],
          self.strides,
          self.feature_group_count,
          use_bias=False,
          name=branch,
          dtype=self.dtype,
        )(x)
        for branch in self.branches
      ]
    else:
      kernels = [
        KernelOf(self.features, branch_shapes[branch], self.feature_group_count, name=branch)(
          x.shape[-1]
        )
        for branch in self.branches
      ]
      ys = stacked_conv(
        x.astype(self.dtype),
        [pad_to_centre(w, k, k).astype(self.dtype) for w in kernels],
        self.strides,
        self.feature_group_count,
      )
    if not self.branch_bn:
      summed = sum(ys[1:], ys[0])
      return batch_norm(ONE_BN, use_affine=self.use_affine, dtype=self.dtype)(
        summed, use_running_average=not train
      )
    outputs = [
      batch_norm(
        f'{branch}_bn', scale=self.gamma_init, use_affine=self.use_affine, dtype=self.dtype
      )(y, use_running_average=not train)
      for branch, y in zip(self.branches, ys)
    ]
    return sum(outputs[1:], outputs[0])


class OnlineACB(ConvSiteModule):
  """The ACB computed as one conv: its branch kernels, each scaled by
  `<branch>_scale` (from `gamma_init`) in place of its BN, summed centred,
  then one BN `bn`.

  Without branch BNs (`branch_bn=False`), or without their learnable scales
  (`use_affine=False`), a branch has no scale to stand for: the block is then
  the ACB without branch BNs (the same variables, `use_affine` on its one BN),
  computed as one conv.
  """

  gamma_init: float = 1.0
  use_affine: bool = True
  branches: tuple[str, ...] = ACB_BRANCHES
  branch_bn: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    validate_branches(self.branches)
    branch_shapes = acb_branch_shapes(self.kernel_size)
    for branch in self.branches:
      KernelOf(self.features, branch_shapes[branch], self.feature_group_count, name=branch)(
        x.shape[-1]
      )
      if self.branch_bn and self.use_affine:
        branch_scale(self, branch, self.gamma_init)
    return one_conv_then_bn(self, x, train, acb_kernel, self.use_affine)


def acb_branch_shapes(k: int) -> dict[str, tuple[int, int]]:
  return {'square': (k, k), 'ver': (k, 1), 'hor': (1, k)}


def acb_kernel(block: BlockVariables) -> jax.Array:
  """The kernel of an ACB computed as one conv: the branches' kernels centred
  on the square one, each scaled by its `<branch>_scale` where the block has
  scales (online), summed."""
  branches = [b for b in ACB_BRANCHES if b in block.params]
  online = 'square_scale' in block.params
  return add_centred(
    [block.scaled(block.kernel(b), f'{b}_scale') if online else block.kernel(b) for b in branches]
  )


def acb_to_conv(block: BlockVariables) -> Conv:
  """With branch BNs: each branch folded with its BN, centred on the square one."""
  return add_branches([block.conv_bn(b, f'{b}_bn') for b in ACB_BRANCHES if b in block.params])


ACB_KIND = BlockKind(
  'ACB',
  skeleton='square',
  to_conv=acb_to_conv,
  online_kernel=acb_kernel,
  names=frozenset(
    {
      *ACB_BRANCHES,
      *(f'{b}_bn' for b in ACB_BRANCHES),
      *(f'{b}_scale' for b in ACB_BRANCHES),
      ONE_BN,
    }
  ),
)


def stacked_conv(
  x: jax.Array, kernels: list[jax.Array], strides: int, feature_group_count: int
) -> list[jax.Array]:
  """conv(x, w) for every HWIO kernel w of one shape, as a single conv.

  Output channels are grouped: a grouped conv reads the kernels' outputs
  group by group, so the kernels are interleaved per group, not concatenated.
  """
  groups, n = feature_group_count, len(kernels)
  kh, kw, per_group_in, features = kernels[0].shape
  per_group = [w.reshape(kh, kw, per_group_in, groups, features // groups) for w in kernels]
  stacked = jnp.concatenate(per_group, axis=-1).reshape(kh, kw, per_group_in, n * features)
  y = conv_with_kernel(x, stacked, strides, groups, x.dtype)
  y = y.reshape(*y.shape[:-1], groups, n, features // groups)
  return [y[..., i, :].reshape(*y.shape[:-3], features) for i in range(n)]


def validate_branches(branches: Sequence[str]) -> None:
  unknown = set(branches) - set(ACB_BRANCHES)
  if unknown or 'square' not in branches or len(set(branches)) != len(branches):
    raise InputError(
      f'ACB branches must be distinct names from {ACB_BRANCHES} and include '
      f"'square' (the KxK skeleton the others are fused onto); got {tuple(branches)}"
    )


def validate_acb_impl(impl: str) -> None:
  if impl not in ACB_IMPLS:
    raise InputError(f'unknown ACB impl {impl!r}; valid: {", ".join(ACB_IMPLS)}')

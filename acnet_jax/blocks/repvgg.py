"""RepVGG block (Ding et al., CVPR 2021): the `repvgg` conv kind.

As DingXiaoH/RepVGG's `RepVGGBlock` (without its ReLU, which the model
applies after the conv site), three branches summed:

    dense      KxK conv -> BN      `dense`, `dense_bn`
    1x1        1x1 conv -> BN      `1x1`, `1x1_bn`
    identity   BN of the input     `identity_bn`, only where the input and
                                   output widths match and the stride is 1

`quantization_friendly=True` is the block of Chu et al. ("Make RepVGG Greater
Again: A Quantization-aware Approach", AAAI 2023; `QARepVGGBlock` in
meituan/YOLOv6), whose fused kernel loses less to int8:

    dense      KxK conv -> BN      `dense`, `dense_bn`
    1x1        1x1 conv            `1x1`
    identity   the input           where the widths match at stride 1
    then one BN of the sum         `sum_bn`, or `identity_sum_bn` where the
                                   sum has the identity (its name says so: the
                                   variables do not record the stride)

The authors' block is 3x3; here K is any odd size the switch hands it (the 5x5
convs of Cifar-quick get a 5x5 dense branch), which fuses the same way. The
identity branch is a BN with no conv: fusion takes it for the identity kernel.

`OnlineRepVGG` is the online form (`acnet_jax.blocks.online`): `dense` and
`1x1` scaled by `dense_scale` and `1x1_scale`, the identity kernel by
`identity_scale`, summed centred into one KxK kernel inside the step, then one
conv and one BN `bn`.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax

from acnet_jax.blocks.algebra import Conv, add_branches, add_centred, identity_kernel
from acnet_jax.blocks.kinds import ONE_BN, BlockKind, BlockVariables
from acnet_jax.blocks.online import branch_scale, one_conv_then_bn
from acnet_jax.blocks.primitives import (
  ConvSiteModule,
  KernelOf,
  batch_norm,
  conv2d,
  conv_then_bn,
)
from acnet_jax.errors import InputError

# The quantization-friendly block's BN after the sum, without and with the identity.
SUM_BN, IDENTITY_SUM_BN = 'sum_bn', 'identity_sum_bn'


@dataclasses.dataclass(frozen=True)
class RepVGGOptions:
  """The options of every RepVGG block a `ConvSwitch` builds (`config.repvgg`)."""

  quantization_friendly: bool = False


class RepVGG(ConvSiteModule):
  quantization_friendly: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    k = self.kernel_size
    if k % 2 != 1:
      raise InputError(f'RepVGG needs an odd kernel size, got {k}')
    shape = dict(
      features=self.features,
      strides=self.strides,
      feature_group_count=self.feature_group_count,
      dtype=self.dtype,
    )
    identity = has_identity(x.shape[-1], self.features, self.strides)
    y = conv_then_bn(x, train, kernel_shape=(k, k), name='dense', **shape)
    if self.quantization_friendly:
      y = y + conv2d(kernel_shape=(1, 1), use_bias=False, name='1x1', **shape)(x)
      if identity:
        y = y + x
      sum_bn = batch_norm(IDENTITY_SUM_BN if identity else SUM_BN, dtype=self.dtype)
      return sum_bn(y, use_running_average=not train)
    y = y + conv_then_bn(x, train, kernel_shape=(1, 1), name='1x1', **shape)
    if identity:
      y = y + batch_norm('identity_bn', dtype=self.dtype)(x, use_running_average=not train)
    return y


def repvgg_to_conv(block: BlockVariables) -> Conv:
  per_group, channels = block.kernel('dense').shape[2:]
  dense = block.conv_bn('dense', 'dense_bn')
  for sum_bn, with_identity in ((SUM_BN, False), (IDENTITY_SUM_BN, True)):
    if block.has(sum_bn):  # Quantization-friendly: the sum's kernel and bias, then its BN.
      kernels = [dense[0], block.kernel('1x1')]
      if with_identity:
        kernels.append(identity_kernel(channels, per_group))
      return block.fold(add_centred(kernels), sum_bn, bias=dense[1])
  branches = [dense, block.conv_bn('1x1', '1x1_bn')]
  if block.has('identity_bn'):
    branches.append(block.fold(identity_kernel(channels, per_group), 'identity_bn'))
  return add_branches(branches)


class OnlineRepVGG(ConvSiteModule):
  """The RepVGG block computed as one conv: its two convs and the identity as
  kernels, each scaled by `<branch>_scale` from 1 (RepVGG's BN scale), summed,
  one conv, one BN `bn`."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    k, groups, channels = self.kernel_size, self.feature_group_count, x.shape[-1]
    KernelOf(self.features, (k, k), groups, name='dense')(channels)
    KernelOf(self.features, (1, 1), groups, name='1x1')(channels)
    identity = has_identity(channels, self.features, self.strides)
    for branch in ('dense', '1x1', 'identity') if identity else ('dense', '1x1'):
      branch_scale(self, branch, 1.0)
    return one_conv_then_bn(self, x, train, online_repvgg_kernel)


def online_repvgg_kernel(block: BlockVariables) -> jax.Array:
  """The kernel of a RepVGG block computed as one conv."""
  dense = block.kernel('dense')
  kernels = [block.scaled(dense, 'dense_scale'), block.scaled(block.kernel('1x1'), '1x1_scale')]
  if block.has('identity_scale'):
    per_group, channels = dense.shape[2:]
    kernels.append(block.scaled(identity_kernel(channels, per_group), 'identity_scale'))
  return add_centred(kernels)


def has_identity(channels: int, features: int, strides: int) -> bool:
  """The identity branch: where the input and output widths match at stride 1."""
  return channels == features and strides == 1


REPVGG_KIND = BlockKind(
  'RepVGG',
  skeleton='dense',
  to_conv=repvgg_to_conv,
  online_kernel=online_repvgg_kernel,
  names=frozenset(
    {
      'dense',
      'dense_bn',
      '1x1',
      '1x1_bn',
      'identity_bn',
      SUM_BN,
      IDENTITY_SUM_BN,
      'dense_scale',
      '1x1_scale',
      'identity_scale',
      ONE_BN,
    }
  ),
)

"""RepVGG block (Ding et al., CVPR 2021): the `repvgg` conv kind.

As DingXiaoH/RepVGG's `RepVGGBlock` (without its ReLU, which the model
applies after the conv site), three branches summed:

    dense      KxK conv -> BN      `dense`, `dense_bn`
    1x1        1x1 conv -> BN      `1x1`, `1x1_bn`
    identity   BN of the input     `identity_bn`, only where the input and
                                   output widths match and the stride is 1

The authors' block is 3x3; here K is any odd size the switch hands it (the 5x5
convs of Cifar-quick get a 5x5 dense branch), which fuses the same way. The
identity branch is a BN with no conv: fusion takes it for the identity kernel.

`OnlineRepVGG` is the online form (`acnet_jax.blocks.online`): `dense` and
`1x1` scaled by `dense_scale` and `1x1_scale`, the identity kernel by
`identity_scale`, summed centred into one KxK kernel inside the step, then one
conv and one BN `bn`.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from acnet_jax.blocks.algebra import Conv, add_branches, add_centred, identity_kernel
from acnet_jax.blocks.kinds import ONE_BN, BlockKind, BlockVariables
from acnet_jax.blocks.online import branch_scale, one_conv_then_bn
from acnet_jax.blocks.primitives import ConvSiteModule, KernelOf, batch_norm, conv_then_bn
from acnet_jax.errors import InputError


class RepVGG(ConvSiteModule):
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
    y = conv_then_bn(x, train, kernel_shape=(k, k), name='dense', **shape)
    y = y + conv_then_bn(x, train, kernel_shape=(1, 1), name='1x1', **shape)
    if has_identity(x.shape[-1], self.features, self.strides):
      y = y + batch_norm('identity_bn', dtype=self.dtype)(x, use_running_average=not train)
    return y


def repvgg_to_conv(block: BlockVariables) -> Conv:
  branches = [block.conv_bn('dense', 'dense_bn'), block.conv_bn('1x1', '1x1_bn')]
  if block.has('identity_bn'):
    per_group, channels = block.kernel('dense').shape[2:]
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
      'dense_scale',
      '1x1_scale',
      'identity_scale',
      ONE_BN,
    }
  ),
)

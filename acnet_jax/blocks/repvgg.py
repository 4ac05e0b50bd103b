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
"""

from __future__ import annotations

import flax.linen as nn
import jax

from acnet_jax.blocks.algebra import Conv, add_branches, identity_kernel
from acnet_jax.blocks.kinds import BlockKind, BlockVariables
from acnet_jax.blocks.primitives import ConvSiteModule, batch_norm, conv_then_bn
from acnet_jax.errors import InputError


class RepVGG(ConvSiteModule):
  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    k = self.kernel_size
    if k % 2 != 1:
      raise InputError(f'RepVGG needs an odd kernel size, got {k}')
    shape = dict(features=self.features, strides=self.strides,
                 feature_group_count=self.feature_group_count, dtype=self.dtype)
    y = conv_then_bn(x, train, kernel_shape=(k, k), name='dense', **shape)
    y = y + conv_then_bn(x, train, kernel_shape=(1, 1), name='1x1', **shape)
    if x.shape[-1] == self.features and self.strides == 1:
      y = y + batch_norm('identity_bn', dtype=self.dtype)(x, use_running_average=not train)
    return y


def repvgg_to_conv(block: BlockVariables) -> Conv:
  branches = [block.conv_bn('dense', 'dense_bn'), block.conv_bn('1x1', '1x1_bn')]
  if block.has('identity_bn'):
    per_group, channels = block.kernel('dense').shape[2:]
    branches.append(block.fold(identity_kernel(channels, per_group), 'identity_bn'))
  return add_branches(branches)


REPVGG_KIND = BlockKind('RepVGG', skeleton='dense', to_conv=repvgg_to_conv, names=frozenset(
    {'dense', 'dense_bn', '1x1', '1x1_bn', 'identity_bn'}))

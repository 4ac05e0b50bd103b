"""Diverse Branch Block (Ding et al., CVPR 2021, "ACNet v2"): the `dbb` conv kind.

As DingXiaoH/DiverseBranchBlock's `DiverseBranchBlock`, four branches summed:

    origin    KxK conv -> BN                                `origin`, `origin_bn`
    1x1       1x1 conv -> BN                                `1x1`, `1x1_bn`
    avg       1x1 conv -> BN+pad -> KxK average pool -> BN  `avg_conv`, `avg_conv_bn`, `avg_bn`
    1x1_kxk   1x1 conv -> BN+pad -> KxK conv -> BN          `1x1_kxk_idconv1`, `1x1_kxk_bn1`,
                                                            `1x1_kxk_conv2`, `1x1_kxk_bn2`

The 1x1 conv of `1x1_kxk` keeps the input width and starts as the identity:
`1x1_kxk_idconv1` holds its difference from the identity, zero at init.

A depthwise DBB (as many groups as output channels, as MobileNet's) follows
the authors too: no `1x1` branch, the `avg` branch pools the zero-padded input
itself (`avg_bn` only), and the 1x1 conv of `1x1_kxk` doubles the width
(`1x1_kxk_conv1`, torch's init), which they found better for MobileNet.

BN+pad is the authors' `BNAndPadLayer`: a BN whose output is padded (k//2 on
each side, for the unpadded pool or conv after it) with what the BN makes of
a zero input, not with zeros. The KxK window then sees what it would see if
the block's input were zero-padded, so the branch is one KxK conv at the
image borders too.

`OnlineDBB` is the online form (`acnet_jax.blocks.online`), as OREPA's: the
same convs without any BN, the intermediate ones included, each branch scaled
by `origin_scale`, `1x1_scale`, `avg_scale` or `1x1_kxk_scale` in place of its
last BN, composed into one KxK kernel inside the step, then one conv and one
BN `bn`. Without BNs between them the 1x1 convs have no bias, so zero padding
is exact and nothing needs BN+pad.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from acnet_jax.blocks.algebra import (
  Conv,
  add_branches,
  add_centred,
  average_pool_kernel,
  fold_batchnorm,
  identity_kernel,
  one_by_one_then_kxk,
  one_by_one_then_kxk_kernel,
)
from acnet_jax.blocks.kinds import ONE_BN, BlockKind, BlockVariables
from acnet_jax.blocks.online import branch_scale, one_conv_then_bn
from acnet_jax.blocks.primitives import (
  ConvSiteModule,
  KernelOf,
  batch_norm,
  conv2d,
  conv_then_bn,
  conv_with_kernel,
  symmetric_padding,
)
from acnet_jax.errors import InputError
from acnet_jax.xla_cpu.dispatch import avg_pool


class DBB(ConvSiteModule):
  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    k, s, groups, channels = self.kernel_size, self.strides, self.feature_group_count, x.shape[-1]
    if k % 2 != 1:
      raise InputError(f'DBB needs an odd kernel size, got {k}')
    depthwise = is_depthwise(groups, channels, self.features)
    shape = dict(features=self.features, strides=s, feature_group_count=groups, dtype=self.dtype)
    conv = functools.partial(conv2d, feature_group_count=groups, use_bias=False, dtype=self.dtype)
    bn = lambda name, y: batch_norm(name, dtype=self.dtype)(y, use_running_average=not train)
    bn_and_pad = functools.partial(batch_norm_and_pad, pad=k // 2, train=train, dtype=self.dtype)

    y = conv_then_bn(x, train, kernel_shape=(k, k), name='origin', **shape)
    if depthwise:
      pooled = avg_pool(x, (k, k), (s, s), padding=symmetric_padding((k, k)))
    else:
      y = y + conv_then_bn(x, train, kernel_shape=(1, 1), name='1x1', **shape)
      widened = conv(self.features, (1, 1), 1, name='avg_conv')(x)
      pooled = avg_pool(bn_and_pad(widened, 'avg_conv_bn'), (k, k), (s, s))
    y = y + bn('avg_bn', pooled)

    if depthwise:
      first = conv(2 * channels, (1, 1), 1, name='1x1_kxk_conv1')(x)
    else:
      first = IdentityBasedConv1x1(groups, self.dtype, name='1x1_kxk_idconv1')(x)
    second = conv(self.features, (k, k), s, padded=False, name='1x1_kxk_conv2')(
      bn_and_pad(first, '1x1_kxk_bn1')
    )
    return y + bn('1x1_kxk_bn2', second)


class IdentityBasedConv1x1(nn.Module):
  """A 1x1 conv, width kept, whose parameter is its kernel's difference from
  the identity (zero at init): the authors' `IdentityBasedConv1x1`."""

  feature_group_count: int
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    channels = x.shape[-1]
    per_group = channels // self.feature_group_count
    delta = self.param('kernel', nn.initializers.zeros, (1, 1, per_group, channels))
    kernel = delta + identity_kernel(channels, per_group)
    return conv_with_kernel(x, kernel, 1, self.feature_group_count, self.dtype)


def batch_norm_and_pad(
  x: jax.Array, name: str, *, pad: int, train: bool, dtype: DTypeLike
) -> jax.Array:
  """BN, then `pad` pixels on each side filled with the BN's eval-mode output
  for a zero input; like the authors' it is a constant for the gradient
  (running statistics, detached scale and bias)."""
  bn = batch_norm(name, dtype=dtype)
  y = bn(x, use_running_average=not train)
  stats, affine = bn.variables['batch_stats'], bn.variables['params']
  _, zero_output = fold_batchnorm(0.0, stats['mean'], stats['var'], affine['scale'], affine['bias'])
  inside = jnp.pad(jnp.ones(y.shape[1:3], bool), ((pad, pad), (pad, pad)))[None, :, :, None]
  padded = jnp.pad(y, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  return jnp.where(inside, padded, jax.lax.stop_gradient(zero_output).astype(y.dtype))


def dbb_to_conv(block: BlockVariables) -> Conv:
  origin = block.kernel('origin')
  size, features = origin.shape[0], origin.shape[-1]
  first = first_of_1x1_kxk(block)
  groups = first.shape[-1] // block.kernel('1x1_kxk_conv2').shape[2]
  branches = [
    block.conv_bn('origin', 'origin_bn'),
    one_by_one_then_kxk(
      block.fold(first, '1x1_kxk_bn1'), block.conv_bn('1x1_kxk_conv2', '1x1_kxk_bn2'), groups
    ),
  ]
  pool = block.fold(average_pool_kernel(features, features // groups, size), 'avg_bn')
  if block.has('avg_conv'):
    branches += [
      block.conv_bn('1x1', '1x1_bn'),
      one_by_one_then_kxk(block.conv_bn('avg_conv', 'avg_conv_bn'), pool, groups),
    ]
  else:  # Depthwise: the input itself is pooled.
    branches.append(pool)
  return add_branches(branches)


# The branches of an online DBB, each with its `<branch>_scale`; a depthwise one has no '1x1'.
ONLINE_BRANCHES = ('origin', '1x1', 'avg', '1x1_kxk')


class OnlineDBB(ConvSiteModule):
  """The DBB computed as one conv: its convs (the same names and inits, the
  1x1 before the KxK identity-based), no BN, a scale per branch from 1 (the
  DBB's BN scale), one KxK kernel, one conv, one BN `bn`."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    k, groups, channels = self.kernel_size, self.feature_group_count, x.shape[-1]
    depthwise = is_depthwise(groups, channels, self.features)
    kernel = functools.partial(KernelOf, feature_group_count=groups)
    kernel(self.features, (k, k), name='origin')(channels)
    if depthwise:
      kernel(2 * channels, (1, 1), name='1x1_kxk_conv1')(channels)
    else:
      kernel(self.features, (1, 1), name='1x1')(channels)
      kernel(self.features, (1, 1), name='avg_conv')(channels)
      kernel(channels, (1, 1), init=nn.initializers.zeros, name='1x1_kxk_idconv1')(channels)
    kernel(self.features, (k, k), name='1x1_kxk_conv2')(2 * channels if depthwise else channels)
    for branch in ONLINE_BRANCHES:
      if not (depthwise and branch == '1x1'):
        branch_scale(self, branch, 1.0)
    return one_conv_then_bn(self, x, train, online_dbb_kernel)


def online_dbb_kernel(block: BlockVariables) -> jax.Array:
  """The kernel of a DBB computed as one conv: each branch's convs composed,
  scaled by its `<branch>_scale`, summed centred."""
  origin = block.kernel('origin')
  size, features = origin.shape[0], origin.shape[-1]
  first, second = first_of_1x1_kxk(block), block.kernel('1x1_kxk_conv2')
  groups = first.shape[-1] // second.shape[2]
  pool = average_pool_kernel(features, features // groups, size)
  branches = {'origin': origin, '1x1_kxk': one_by_one_then_kxk_kernel(first, second, groups)}
  if block.has('avg_conv'):
    branches['1x1'] = block.kernel('1x1')
    branches['avg'] = one_by_one_then_kxk_kernel(block.kernel('avg_conv'), pool, groups)
  else:  # Depthwise: the input itself is pooled.
    branches['avg'] = pool
  return add_centred([block.scaled(kernel, f'{b}_scale') for b, kernel in branches.items()])


def first_of_1x1_kxk(block: BlockVariables) -> jax.Array:
  """The kernel of the 1x1 conv before the KxK one: identity-based, or a plain
  conv (depthwise, 2x wide)."""
  if not block.has('1x1_kxk_idconv1'):
    return block.kernel('1x1_kxk_conv1')
  delta = block.kernel('1x1_kxk_idconv1')
  return delta + identity_kernel(delta.shape[-1], delta.shape[2])


def is_depthwise(groups: int, channels: int, features: int) -> bool:
  """The authors' test, as many groups as outputs; such a DBB pools its input,
  so it needs as many inputs."""
  if groups < features:
    return False
  if channels != features:
    raise InputError(
      f'a depthwise DBB pools its input, so it needs as many input as output '
      f'channels; got {channels} in, {features} out'
    )
  return True


DBB_KIND = BlockKind(
  'DBB',
  skeleton='origin',
  to_conv=dbb_to_conv,
  online_kernel=online_dbb_kernel,
  names=frozenset(
    {
      'origin',
      'origin_bn',
      '1x1',
      '1x1_bn',
      'avg_conv',
      'avg_conv_bn',
      'avg_bn',
      '1x1_kxk_idconv1',
      '1x1_kxk_conv1',
      '1x1_kxk_bn1',
      '1x1_kxk_conv2',
      '1x1_kxk_bn2',
      *(f'{b}_scale' for b in ONLINE_BRANCHES),
      ONE_BN,
    }
  ),
)

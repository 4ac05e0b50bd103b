"""Structural re-parameterization on arrays: one function per algebraic step.

Every training-time block of `acnet_jax.blocks` is a sum of branches, each a
chain of linear maps (convs, BNs in eval mode, average pools), so each branch
is one conv and so is their sum. Kernels are HWIO, biases per output channel:

    fold_batchnorm        conv W then BN        -> W t, beta - mu t,  t = gamma / sqrt(var + eps)
    one_by_one_then_kxk   1x1 conv then KxK conv -> one KxK conv (`_kernel`: without biases)
    identity_kernel       the input itself       -> a (grouped) conv kernel
    average_pool_kernel   KxK average pool       -> a (grouped) conv kernel
    add_branches          sum of convs           -> one conv (kernels centred)

Centring is what symmetric padding buys: every branch's window is centred on
the same input pixel, so a smaller kernel adds onto the centre of the larger.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from acnet_jax.blocks.primitives import BN_EPSILON, pad_to_centre

Conv = tuple[jax.Array, jax.Array]  # (HWIO kernel, bias)
# Accelerators multiply float32 matrices in lower precision by default.
EXACT = jax.lax.Precision.HIGHEST


def fold_batchnorm(
  kernel: jax.Array,
  mean: jax.Array,
  var: jax.Array,
  scale: jax.Array | float = 1.0,
  bias: jax.Array | float = 0.0,
  eps: float = BN_EPSILON,
) -> Conv:
  """(W, BN) -> (W t, beta - mu t), t = gamma / sqrt(var + eps). Kernel is HWIO."""
  t = scale / jnp.sqrt(var + eps)
  return kernel * t, bias - mean * t


def one_by_one_then_kxk(first: Conv, second: Conv, groups: int) -> Conv:
  """A 1x1 conv, then a KxK conv, both with `groups` groups -> one KxK conv.

  Exact only where the KxK conv sees the 1x1 conv's bias in its padding too,
  as a conv of the padded input would: the DBB pads the intermediate with it.
  """
  (k1, b1), (k2, b2) = first, second
  height, width, per_group_mid, out = k2.shape
  per_group = k2.reshape(height, width, per_group_mid, groups, out // groups)
  bias = jnp.einsum('hwmgo,gm->go', per_group, b1.reshape(groups, per_group_mid), precision=EXACT)
  return one_by_one_then_kxk_kernel(k1, k2, groups), b2 + bias.reshape(out)


def one_by_one_then_kxk_kernel(first: jax.Array, second: jax.Array, groups: int) -> jax.Array:
  """The kernel of a 1x1 conv without bias, then a KxK conv, both with `groups`
  groups: exact with zero padding, which the 1x1 conv keeps zero."""
  per_group_in = first.shape[2]
  height, width, per_group_mid, out = second.shape
  first = first.reshape(per_group_in, groups, per_group_mid)
  second = second.reshape(height, width, per_group_mid, groups, out // groups)
  kernel = jnp.einsum('igm,hwmgo->hwigo', first, second, precision=EXACT)
  return kernel.reshape(height, width, per_group_in, out)


def identity_kernel(channels: int, per_group: int, size: int = 1) -> jax.Array:
  """The size x size kernel of a conv with `channels // per_group` groups that
  copies its input: a one at the centre, from each channel to itself."""
  copies = jnp.arange(channels) % per_group == jnp.arange(per_group)[:, None]
  return pad_to_centre(copies.astype(jnp.float32)[None, None], size, size)


def average_pool_kernel(channels: int, per_group: int, size: int) -> jax.Array:
  """A size x size average pool of each channel (zero padding counted, as
  torch's AvgPool2d and flax's avg_pool count it) as a grouped conv kernel."""
  return jnp.tile(identity_kernel(channels, per_group), (size, size, 1, 1)) / size**2


def add_centred(kernels: list[jax.Array]) -> jax.Array:
  """Sum of HWIO kernels of odd sizes, each zero-padded around the largest's centre."""
  height = max(k.shape[0] for k in kernels)
  width = max(k.shape[1] for k in kernels)
  return sum(pad_to_centre(k, height, width) for k in kernels)


def add_branches(branches: list[Conv]) -> Conv:
  """Convs summed on one input -> one conv (their kernels centred)."""
  return add_centred([k for k, _ in branches]), sum(b for _, b in branches)

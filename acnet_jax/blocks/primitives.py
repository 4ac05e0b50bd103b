"""The parts every block is built from: PyTorch-default BN and conv, and
symmetric padding (k//2 on both sides), on which fusion depends; a conv's
kernel declared without the conv, and a conv with a kernel computed in the step."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from acnet_jax.blocks.batch_norm import BatchNorm
from acnet_jax.xla_cpu.dispatch import relu

# PyTorch's BatchNorm2d defaults: eps 1e-5 and running-average momentum 0.1,
# which is flax's momentum=0.9 (flax weighs the old value, torch the new).
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9

# torch.nn.Conv2d's default init (kaiming_uniform with a=sqrt(5)) is a uniform
# distribution of variance 1/(3 fan_in).
torch_default_init = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')


class ConvSiteModule(nn.Module):
  """What a `ConvSwitch` hands every block it builds: the conv site's shape
  and the computation dtype. Called as `block(x, train)`."""

  features: int
  kernel_size: int
  strides: int = 1
  feature_group_count: int = 1
  dtype: DTypeLike = jnp.float32


def batch_norm(
  name: str, *, scale: float = 1.0, use_affine: bool = True, dtype: DTypeLike = jnp.float32
) -> BatchNorm:
  """flax's BN (two-pass variance, statistics in float32 whatever `dtype`),
  with a closed-form gradient on the CPU."""
  return BatchNorm(
    momentum=BN_MOMENTUM,
    epsilon=BN_EPSILON,
    use_affine=use_affine,
    scale_init=scale,
    dtype=dtype,
    name=name,
  )


def bn_relu(x: jax.Array, train: bool, name: str, dtype: DTypeLike = jnp.float32) -> jax.Array:
  """The pre-activation of a BN-ReLU-conv site: a BN that follows no conv."""
  return relu(batch_norm(name, dtype=dtype)(x, use_running_average=not train))


def symmetric_padding(kernel_shape: Sequence[int]) -> tuple[tuple[int, int], ...]:
  """k//2 on both sides of every spatial axis.

  XLA's 'SAME' pads stride-2 convs on even inputs by (0, 1); a 1D branch
  padded that way would be off the square kernel's centre and the fused conv
  would no longer equal the ACB.
  """
  return tuple((k // 2, k // 2) for k in kernel_shape)


def pad_to_centre(kernel: jax.Array, height: int, width: int) -> jax.Array:
  """Zero-pads an HWIO kernel (e.g. Kx1) to height x width around its centre."""
  kh, kw = kernel.shape[:2]
  dh, dw = (height - kh) // 2, (width - kw) // 2
  return jnp.pad(kernel, ((dh, height - kh - dh), (dw, width - kw - dw), (0, 0), (0, 0)))


def conv2d(
  features: int,
  kernel_shape: tuple[int, int],
  strides: int,
  feature_group_count: int,
  use_bias: bool,
  name: str,
  dtype: DTypeLike = jnp.float32,
  padded: bool = True,
) -> nn.Conv:
  """`padded=False`: no padding, for a conv whose input is padded already."""
  return nn.Conv(
    features,
    kernel_shape,
    strides=strides,
    padding=symmetric_padding(kernel_shape) if padded else 'VALID',
    feature_group_count=feature_group_count,
    use_bias=use_bias,
    kernel_init=torch_default_init,
    dtype=dtype,
    name=name,
  )


def conv_then_bn(
  x: jax.Array,
  train: bool,
  *,
  features: int,
  kernel_shape: tuple[int, int],
  strides: int,
  feature_group_count: int,
  name: str,
  dtype: DTypeLike = jnp.float32,
) -> jax.Array:
  """A conv without bias named `name`, then a BN named `name + '_bn'`: a
  branch of a training-time block."""
  y = conv2d(
    features, kernel_shape, strides, feature_group_count, use_bias=False, name=name, dtype=dtype
  )(x)
  return batch_norm(f'{name}_bn', dtype=dtype)(y, use_running_average=not train)


class KernelOf(nn.Module):
  """The kernel that `conv2d` would create for an input of `in_features`
  channels, under the same name, shape and init, without applying it (`init`:
  another initializer, e.g. zeros for a kernel stored as a difference)."""

  features: int
  kernel_shape: tuple[int, int]
  feature_group_count: int = 1
  init: Callable[..., jax.Array] = torch_default_init

  @nn.compact
  def __call__(self, in_features: int) -> jax.Array:
    shape = (*self.kernel_shape, in_features // self.feature_group_count, self.features)
    return self.param('kernel', self.init, shape)


def conv_with_kernel(
  x: jax.Array,
  kernel: jax.Array,
  strides: int,
  feature_group_count: int,
  dtype: DTypeLike = jnp.float32,
) -> jax.Array:
  """x convolved with an HWIO kernel given as an array, padded symmetrically,
  computed in `dtype` (as `conv2d` computes)."""
  return jax.lax.conv_general_dilated(
    x.astype(dtype),
    kernel.astype(dtype),
    (strides, strides),
    symmetric_padding(kernel.shape[:2]),
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    feature_group_count=feature_group_count,
  )

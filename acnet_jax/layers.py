"""The convolution switch: one conv site, three kinds.

Every model builds its convolutions through a `ConvSwitch`, so the choice
between the baseline (`normal`), the training-time ACNet (`acnet`) and the
fused inference form (`deploy`) lives in this one place:

    normal   KxK conv (no bias) -> BN                      `ConvBN`
    acnet    KxK conv+BN + Kx1 conv+BN + 1xK conv+BN       `ACB`
    deploy   KxK conv with bias                            `ConvBias`

Parameter names keep the paper's figure visible in a checkpoint:
`ConvBN` holds `conv`/`bn`, `ACB` holds `square`/`square_bn`, `ver`/`ver_bn`,
`hor`/`hor_bn`, and `ConvBias` holds `conv` (kernel and bias).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal, get_args

import flax.linen as nn
import jax

from acnet_jax.errors import InputError

ConvKind = Literal['normal', 'acnet', 'deploy']
CONV_KINDS: tuple[str, ...] = get_args(ConvKind)
ACB_BRANCHES: tuple[str, ...] = ('square', 'ver', 'hor')

# PyTorch's BatchNorm2d defaults: eps 1e-5 and running-average momentum 0.1,
# which is flax's momentum=0.9 (flax weighs the old value, torch the new).
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9

# torch.nn.Conv2d's default init (kaiming_uniform with a=sqrt(5)) is a uniform
# distribution of variance 1/(3 fan_in).
torch_default_init = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')


def batch_norm(name: str, *, scale: float = 1.0, use_affine: bool = True) -> nn.BatchNorm:
  return nn.BatchNorm(
      momentum=BN_MOMENTUM,
      epsilon=BN_EPSILON,
      use_scale=use_affine,
      use_bias=use_affine,
      scale_init=nn.initializers.constant(scale),
      # Two-pass variance: E[x^2]-E[x]^2 loses digits that fusion tests see.
      use_fast_variance=False,
      name=name,
  )


def bn_relu(x: jax.Array, train: bool, name: str) -> jax.Array:
  """The pre-activation of a BN-ReLU-conv site: a BN that follows no conv."""
  return nn.relu(batch_norm(name)(x, use_running_average=not train))


def symmetric_padding(kernel_shape: Sequence[int]) -> tuple[tuple[int, int], ...]:
  """k//2 on both sides of every spatial axis.

  XLA's 'SAME' pads stride-2 convs on even inputs by (0, 1); a 1D branch
  padded that way would be off the square kernel's centre and the fused conv
  would no longer equal the ACB.
  """
  return tuple((k // 2, k // 2) for k in kernel_shape)


def conv2d(features: int, kernel_shape: tuple[int, int], strides: int,
           feature_group_count: int, use_bias: bool, name: str) -> nn.Conv:
  return nn.Conv(
      features,
      kernel_shape,
      strides=strides,
      padding=symmetric_padding(kernel_shape),
      feature_group_count=feature_group_count,
      use_bias=use_bias,
      kernel_init=torch_default_init,
      name=name,
  )


class ConvBN(nn.Module):
  """The baseline block: KxK conv without bias, then BatchNorm."""

  features: int
  kernel_size: int
  strides: int = 1
  feature_group_count: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    k = self.kernel_size
    y = conv2d(self.features, (k, k), self.strides, self.feature_group_count,
               use_bias=False, name='conv')(x)
    return batch_norm('bn')(y, use_running_average=not train)


class ACB(nn.Module):
  """Asymmetric Convolution Block (Ding et al. 2019, Fig. 2).

  Sum of KxK, Kx1 and 1xK conv+BN branches. With symmetric padding every
  branch's sliding window is centred on the same input pixel, so in eval mode
  the block equals one KxK conv (see `fusion.acb_to_conv`).
  """

  features: int
  kernel_size: int
  strides: int = 1
  feature_group_count: int = 1
  gamma_init: float = 1.0
  use_affine: bool = True
  branches: tuple[str, ...] = ACB_BRANCHES

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    validate_branches(self.branches)
    k = self.kernel_size
    if k % 2 != 1:
      raise InputError(f'ACB needs an odd kernel size, got {k}')
    branch_shapes = {'square': (k, k), 'ver': (k, 1), 'hor': (1, k)}
    outputs = []
    for branch in self.branches:
      y = conv2d(self.features, branch_shapes[branch], self.strides,
                 self.feature_group_count, use_bias=False, name=branch)(x)
      bn = batch_norm(f'{branch}_bn', scale=self.gamma_init, use_affine=self.use_affine)
      outputs.append(bn(y, use_running_average=not train))
    return sum(outputs[1:], outputs[0])


class ConvBias(nn.Module):
  """One KxK conv with bias: the deploy form of every block, and the plain
  conv of a pre-activation (BN-ReLU-conv) site in the baseline."""

  features: int
  kernel_size: int
  strides: int = 1
  feature_group_count: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    del train  # No batch statistics; the argument keeps every block alike.
    k = self.kernel_size
    return conv2d(self.features, (k, k), self.strides, self.feature_group_count,
                  use_bias=True, name='conv')(x)


def validate_branches(branches: Sequence[str]) -> None:
  unknown = set(branches) - set(ACB_BRANCHES)
  if unknown or 'square' not in branches or len(set(branches)) != len(branches):
    raise InputError(
        f'ACB branches must be distinct names from {ACB_BRANCHES} and include '
        f"'square' (the KxK skeleton the others are fused onto); got {tuple(branches)}")


def uses_acb(kernel_size: int) -> bool:
  """The authors' builder: 1x1 convs and large stems (7x7) stay normal."""
  return 1 < kernel_size < 7


@dataclasses.dataclass(frozen=True)
class ConvSwitch:
  """Builds every conv site of a model as the block of one kind.

  A model calls `conv(features, kernel_size, strides=..., name=...)` and gets a
  module `(x, train) -> y`. `with_bn=False` marks a conv that is not followed
  by its own BN in the baseline (a BN-ReLU-conv pre-activation site): it is a
  plain conv with bias there, an ACB in `acnet` and a conv with bias in
  `deploy`.
  """

  kind: ConvKind = 'normal'
  gamma_init: float = 1.0
  use_affine: bool = True
  branches: tuple[str, ...] = ACB_BRANCHES

  def __post_init__(self) -> None:
    if self.kind not in CONV_KINDS:
      raise InputError(f'unknown conv kind {self.kind!r}; valid kinds: {", ".join(CONV_KINDS)}')
    validate_branches(self.branches)

  def __call__(self, features: int, kernel_size: int, *, strides: int = 1,
               feature_group_count: int = 1, with_bn: bool = True,
               name: str | None = None) -> nn.Module:
    shape = dict(features=features, kernel_size=kernel_size, strides=strides,
                 feature_group_count=feature_group_count, name=name)
    if self.kind == 'acnet' and uses_acb(kernel_size):
      return ACB(**shape, gamma_init=self.gamma_init, use_affine=self.use_affine,
                 branches=self.branches)
    if self.kind == 'deploy' or not with_bn:
      return ConvBias(**shape)
    return ConvBN(**shape)

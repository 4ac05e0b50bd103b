"""The convolution switch: one conv site, three kinds.

Every model builds its convolutions through a `ConvSwitch`, so the choice
between the baseline (`normal`), the training-time ACNet (`acnet`) and the
fused inference form (`deploy`) lives in this one place:

    normal   KxK conv (no bias) -> BN                      `ConvBN`
    acnet    KxK conv+BN + Kx1 conv+BN + 1xK conv+BN       `ACB`
             (or, `branch_bn=False`: (KxK + Kx1 + 1xK conv) -> BN)
    deploy   KxK conv with bias                            `ConvBias`

Parameter names keep the paper's figure visible in a checkpoint:
`ConvBN` holds `conv`/`bn`, `ACB` holds `square`/`square_bn`, `ver`/`ver_bn`,
`hor`/`hor_bn` (without branch BNs: `square`, `ver`, `hor` and one `bn`), and
`ConvBias` holds `conv` (kernel and bias).

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

from acnet_jax.errors import InputError

ConvKind = Literal['normal', 'acnet', 'deploy']
CONV_KINDS: tuple[str, ...] = get_args(ConvKind)
ACB_BRANCHES: tuple[str, ...] = ('square', 'ver', 'hor')
# How an ACB computes its branches in training; both give the same values
# from the same parameter tree (see `ACB`).
AcbImpl = Literal['branches', 'stacked']
ACB_IMPLS: tuple[str, ...] = get_args(AcbImpl)
# Computation dtypes of a ConvSwitch; parameters are float32 either way.
DTYPES: tuple[str, ...] = ('float32', 'bfloat16')

# PyTorch's BatchNorm2d defaults: eps 1e-5 and running-average momentum 0.1,
# which is flax's momentum=0.9 (flax weighs the old value, torch the new).
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9

# torch.nn.Conv2d's default init (kaiming_uniform with a=sqrt(5)) is a uniform
# distribution of variance 1/(3 fan_in).
torch_default_init = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')


def batch_norm(name: str, *, scale: float = 1.0, use_affine: bool = True,
               dtype: DTypeLike = jnp.float32) -> nn.BatchNorm:
  """Statistics are reduced in float32 whatever `dtype` (flax's default)."""
  return nn.BatchNorm(
      momentum=BN_MOMENTUM,
      epsilon=BN_EPSILON,
      use_scale=use_affine,
      use_bias=use_affine,
      scale_init=nn.initializers.constant(scale),
      # Two-pass variance: E[x^2]-E[x]^2 loses digits that fusion tests see.
      use_fast_variance=False,
      dtype=dtype,
      name=name,
  )


def bn_relu(x: jax.Array, train: bool, name: str, dtype: DTypeLike = jnp.float32) -> jax.Array:
  """The pre-activation of a BN-ReLU-conv site: a BN that follows no conv."""
  return nn.relu(batch_norm(name, dtype=dtype)(x, use_running_average=not train))


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


def conv2d(features: int, kernel_shape: tuple[int, int], strides: int,
           feature_group_count: int, use_bias: bool, name: str,
           dtype: DTypeLike = jnp.float32) -> nn.Conv:
  return nn.Conv(
      features,
      kernel_shape,
      strides=strides,
      padding=symmetric_padding(kernel_shape),
      feature_group_count=feature_group_count,
      use_bias=use_bias,
      kernel_init=torch_default_init,
      dtype=dtype,
      name=name,
  )


class ConvBN(nn.Module):
  """The baseline block: KxK conv without bias, then BatchNorm."""

  features: int
  kernel_size: int
  strides: int = 1
  feature_group_count: int = 1
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    k = self.kernel_size
    y = conv2d(self.features, (k, k), self.strides, self.feature_group_count,
               use_bias=False, name='conv', dtype=self.dtype)(x)
    return batch_norm('bn', dtype=self.dtype)(y, use_running_average=not train)


class ACB(nn.Module):
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

  features: int
  kernel_size: int
  strides: int = 1
  feature_group_count: int = 1
  gamma_init: float = 1.0
  use_affine: bool = True
  branches: tuple[str, ...] = ACB_BRANCHES
  impl: AcbImpl = 'branches'
  branch_bn: bool = True
  dtype: DTypeLike = jnp.float32

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
      return batch_norm('bn', use_affine=self.use_affine, dtype=self.dtype)(
          summed, use_running_average=not train)
    outputs = [
        batch_norm(f'{branch}_bn', scale=self.gamma_init, use_affine=self.use_affine,
                   dtype=self.dtype)(y, use_running_average=not train)
        for branch, y in zip(self.branches, ys)]
    return sum(outputs[1:], outputs[0])


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


class ConvBias(nn.Module):
  """One KxK conv with bias: the deploy form of every block, and the plain
  conv of a pre-activation (BN-ReLU-conv) site in the baseline."""

  features: int
  kernel_size: int
  strides: int = 1
  feature_group_count: int = 1
  dtype: DTypeLike = jnp.float32

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
  `deploy`. `dtype` ('float32' or 'bfloat16', or the jnp dtype) is the
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
    if self.kind == 'acnet' and uses_acb(kernel_size):
      return ACB(**shape, gamma_init=self.gamma_init, use_affine=self.use_affine,
                 branches=self.branches, impl=self.acb_impl, branch_bn=self.branch_bn)
    if self.kind == 'deploy' or not with_bn:
      return ConvBias(**shape)
    return ConvBN(**shape)

"""How fusion recognises a training-time block and turns it into one conv.

Each block module declares, next to itself, a `BlockKind`: the names of its
children in the variable trees (its signature) and its fuse rule, written
with `acnet_jax.blocks.algebra` on a `BlockVariables` view of its variables;
and, for a block that can be computed as one conv followed by one BN (its
online form, `acnet_jax.blocks.online`), the function that builds that conv's
kernel from its branches.
`acnet_jax.fusion` walks the trees and asks the table `switch.BLOCK_KINDS`,
so a new kind is one module and one entry there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from acnet_jax.blocks.algebra import Conv, fold_batchnorm
from acnet_jax.errors import InputError

Tree = Mapping[str, Any]
# The one BN of a block computed as one conv: an online block's, and the
# ACB's without branch BNs.
ONE_BN = 'bn'


class FusionError(InputError):
  """The variables do not have the structure the transform expects."""


@dataclasses.dataclass(frozen=True)
class BlockVariables:
  """One block's `params` and `batch_stats`, and its path for error messages."""

  params: Tree
  stats: Tree
  path: str

  def has(self, name: str) -> bool:
    return name in self.params or name in self.stats

  def kernel(self, conv: str) -> jax.Array:
    try:
      return self.params[conv]['kernel']
    except (KeyError, TypeError):
      raise FusionError(f"no kernel at '{self.path}/{conv}'") from None

  def scaled(self, kernel: jax.Array, scale: str) -> jax.Array:
    """diag(s) `kernel`: each output channel of the HWIO kernel times the
    child per-channel scale `scale` (an online branch's)."""
    s = self.params.get(scale)
    if s is None:
      raise FusionError(f"no scale at '{self.path}/{scale}'")
    if jnp.shape(s) != kernel.shape[-1:]:
      raise FusionError(
        f"'{self.path}/{scale}' has shape {jnp.shape(s)} but its branch has "
        f'{kernel.shape[-1]} output channels: not the variables of this block'
      )
    return kernel * s

  def conv_bn(self, conv: str, bn: str) -> Conv:
    """The child conv `conv` followed by the child BN `bn`, as one conv."""
    return self.fold(self.kernel(conv), bn)

  def fold(self, kernel: jax.Array, bn: str, bias: jax.Array | float = 0.0) -> Conv:
    """`kernel` (HWIO) with `bias`, followed by the child BN `bn`, as one conv:
    BN(W x + b) is W x normalised around mean - b."""
    moments = self.stats.get(bn)
    if not isinstance(moments, Mapping) or not {'mean', 'var'} <= set(moments):
      raise FusionError(
        f"no batch statistics (mean, var) for the BN at '{self.path}/{bn}': pass the "
        "model's 'batch_stats' collection, from the same model as the params"
      )
    affine = self.params.get(bn, {})
    channels = kernel.shape[-1]
    for name, value in [*moments.items(), *affine.items()]:
      if jnp.shape(value) != (channels,):
        raise FusionError(
          f"'{self.path}/{bn}/{name}' has shape {jnp.shape(value)} but the conv before it "
          f'has {channels} output channels: params and batch_stats '
          'come from different models'
        )
    return fold_batchnorm(
      kernel,
      moments['mean'] - bias,
      moments['var'],
      affine.get('scale', 1.0),
      affine.get('bias', 0.0),
    )


@dataclasses.dataclass(frozen=True)
class BlockKind:
  """A block's signature in the variable trees, and its fuse rule.

  `skeleton` is the KxK conv every block of the kind has; no other kind has a
  child of that name. `names` are all the children a block of the kind may
  have, in either form. `to_conv` returns the (kernel, bias) of the one conv
  that equals the block in eval mode. `online_kernel`, where the kind has a
  form computed as one conv of a kernel built from its branches and then the
  one BN `ONE_BN`, builds that kernel: the block and `fuse` call the same function.
  """

  name: str
  skeleton: str
  names: frozenset[str]
  to_conv: Callable[[BlockVariables], Conv]
  online_kernel: Callable[[BlockVariables], jax.Array] | None = None

  def fuse(self, block: BlockVariables) -> Conv:
    """The (kernel, bias) of the one conv that equals `block` in eval mode: a
    block with the one BN folds it into the kernel it is computed with."""
    if self.online_kernel is not None and block.has(ONE_BN):
      return block.fold(self.online_kernel(block), ONE_BN)
    return self.to_conv(block)

  def owns(self, children: frozenset[str]) -> bool:
    """A lone skeleton is not a block of this kind: it has nothing to fold."""
    return children <= self.names and self.skeleton in children and children != {self.skeleton}

"""Pure pytree transforms from training-time variables to inference variables.

A conv kernel W followed by BatchNorm (gamma, beta, running mean mu and
variance var) is, in eval mode, one conv with a bias:

    BN(W * x) = (W t) * x + (beta - mu t),    t = gamma / sqrt(var + eps)

with t applied per output channel. Every training-time block (ACB, DBB,
RepVGG) is a sum of branches that are each such chains of linear maps, so in
eval mode it is one conv too; `acnet_jax.blocks.algebra` has the steps and
each block's `BlockKind` (in `acnet_jax.blocks.switch.BLOCK_KINDS`) its rule.

Nothing here builds a module: the functions take and return the variable
trees (`params`, `batch_stats`) of the models in `acnet_jax.models`, and
recognise the blocks by the names of their children.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from acnet_jax.blocks.algebra import Conv
from acnet_jax.blocks.conv_bn import CONV_BN_KIND
from acnet_jax.blocks.kinds import BlockKind, BlockVariables, FusionError
from acnet_jax.blocks.primitives import BN_EPSILON
from acnet_jax.blocks.switch import BLOCK_KINDS, REPARAMETERIZED_KINDS, TRAINING_BLOCKS

Tree = Mapping[str, Any]
Block = tuple[dict[str, Any], dict[str, Any] | None]


def block_to_conv(params: Tree, stats: Tree, path: str) -> Conv:
  """One block's variables (of any kind in BLOCK_KINDS) -> (kernel, bias) of the equal conv."""
  kind = block_kind(params, stats, path)
  if kind is None:
    raise FusionError(
      f"'{path}' is no block fusion knows (it has {sorted(_children(params, stats))})"
    )
  return kind.fuse(BlockVariables(params, stats, path))


def block_kind(
  params: Tree, stats: Tree, path: str, kinds: tuple[BlockKind, ...] = BLOCK_KINDS
) -> BlockKind | None:
  """The kind among `kinds` whose signature the node's children match, if any.

  Children that only one kind has, without that kind's skeleton, are a broken
  block of that kind: refused, rather than passed through unfused.
  """
  children = _children(params, stats)
  for kind in kinds:
    if kind.owns(children):
      return kind
  for kind in BLOCK_KINDS:
    others = frozenset().union(*(k.names for k in BLOCK_KINDS if k is not kind))
    if children <= kind.names and children - others and kind.skeleton not in children:
      raise FusionError(
        f"{kind.name} at '{path}' has no '{kind.skeleton}' kernel (it has {sorted(children)})"
      )
  return None


def fuse_params(params: Tree, batch_stats: Tree | None) -> tuple[dict, dict]:
  """Variables of any training-time model (`normal`, `acnet`, `dbb`, `repvgg`)
  -> variables of its `deploy` model.

  Every block becomes `{'conv': {'kernel', 'bias'}}`. BatchNorms outside
  blocks (pre-activation BNs) stay, and are the only entries of the returned
  batch_stats. Variables already in deploy form come back unchanged.
  """

  def to_deploy(block: BlockVariables, kind: BlockKind) -> Block:
    kernel, bias = kind.fuse(block)
    return {'conv': {'kernel': kernel, 'bias': bias}}, None

  new_params, new_stats, _ = _map_blocks(params, batch_stats or {}, BLOCK_KINDS, to_deploy)
  return new_params, new_stats


def to_normal(params: Tree, batch_stats: Tree | None, normal_params: Tree) -> tuple[dict, dict]:
  """Variables of a re-parameterized model (`acnet`, `dbb`, `repvgg`) ->
  variables of its `normal` (baseline) model.

  Each ACB, DBB or RepVGG block becomes the block the baseline has at its
  place, computing exactly what it did in eval mode: a ConvBN whose BN only
  adds the fused bias (gamma 1, mean 0, var 1 - eps), or, at a pre-activation
  site, a conv with the fused bias. It is the starting point for fine-tuning
  the plain architecture. `normal_params` is the baseline's params tree
  (arrays or `jax.eval_shape` structs): it says which block each site is, and
  the result is checked against it.
  """

  def to_normal_block(block: BlockVariables, kind: BlockKind) -> Block:
    kernel, bias = kind.fuse(block)
    target = _subtree(normal_params, block.path)
    if CONV_BN_KIND.owns(frozenset(target)):
      channels = bias.shape
      return (
        {'conv': {'kernel': kernel}, 'bn': {'scale': jnp.ones(channels), 'bias': bias}},
        {'bn': {'mean': jnp.zeros(channels), 'var': jnp.full(channels, 1.0 - BN_EPSILON)}},
      )
    return {'conv': {'kernel': kernel, 'bias': bias}}, None

  new_params, new_stats, count = _map_blocks(
    params, batch_stats or {}, REPARAMETERIZED_KINDS, to_normal_block
  )
  if count == 0:
    blocks = ', '.join(kind.name for kind in REPARAMETERIZED_KINDS)
    kinds = ' or '.join(repr(kind) for kind in TRAINING_BLOCKS)
    raise FusionError(
      f'to_normal found no {blocks} block: these are not the variables of '
      f'a model of conv kind {kinds}'
    )
  _check_same_shapes(new_params, normal_params)
  return new_params, new_stats


def _children(params: Tree, stats: Tree) -> frozenset[str]:
  return frozenset(params) | frozenset(stats)


def _subtree(tree: Tree, path: str) -> Tree:
  node = tree
  for key in path.split('/'):
    if not isinstance(node, Mapping) or key not in node:
      raise FusionError(f"the normal model has no block at '{path}': not the same architecture")
    node = node[key]
  return node


def _check_same_shapes(actual: Tree, expected: Tree) -> None:
  flat = lambda tree: {
    '/'.join(str(k.key) for k in path): jnp.shape(leaf)
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
  }
  got, want = flat(actual), flat(expected)
  for path in sorted(got.keys() | want.keys()):
    if got.get(path) != want.get(path):
      raise FusionError(
        f"'{path}' would have shape {got.get(path)} but the normal model has "
        f'{want.get(path)}: not the same architecture'
      )


def _map_blocks(
  params: Tree,
  stats: Tree,
  kinds: tuple[BlockKind, ...],
  convert: Callable[[BlockVariables, BlockKind], Block],
  path: str = '',
) -> tuple[dict, dict, int]:
  """Rebuilds (params, stats), replacing each block of one of `kinds`."""
  if not isinstance(stats, Mapping):
    raise FusionError(f"batch_stats at '{path}' is a leaf where params have a module")
  new_params: dict[str, Any] = {}
  new_stats: dict[str, Any] = {}
  count = 0
  for key in sorted(params.keys() | stats.keys()):
    child_path = f'{path}/{key}' if path else key
    p, s = params.get(key, {}), stats.get(key, {})
    if not isinstance(p, Mapping) or (not p and not isinstance(s, Mapping)):
      # A leaf (an array of a module that is not a block) passes unchanged.
      if key in params:
        new_params[key] = p
      if key in stats:
        new_stats[key] = s
      continue
    kind = block_kind(p, s, child_path, kinds)
    if kind is not None:
      block_params, block_stats = convert(BlockVariables(p, s, child_path), kind)
      count += 1
    else:
      block_params, block_stats, n = _map_blocks(p, s, kinds, convert, child_path)
      count += n
    if block_params:
      new_params[key] = block_params
    if block_stats:
      new_stats[key] = block_stats
  return _sorted(new_params), _sorted(new_stats), count


def _sorted(tree: dict[str, Any]) -> dict[str, Any]:
  return {k: tree[k] for k in sorted(tree)}

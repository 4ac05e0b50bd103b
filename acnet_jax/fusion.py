"""Pure pytree transforms from training-time variables to inference variables.

A conv kernel W followed by BatchNorm (gamma, beta, running mean mu and
variance var) is, in eval mode, one conv with a bias:

    BN(W * x) = (W t) * x + (beta - mu t),    t = gamma / sqrt(var + eps)

with t applied per output channel. A conv is linear in its kernel, and with
symmetric padding the Kx1 and 1xK windows of an ACB sit on the centre column
and row of the KxK window, so the three branches add up to one KxK conv:

    kernel = W_square t_s + pad(W_ver t_v) + pad(W_hor t_h)
    bias   = b_s + b_v + b_h

An ACB without branch BNs (one BN after the summed convs) folds its one BN
into the summed kernel W_square + pad(W_ver) + pad(W_hor).

Nothing here builds a module: the functions take and return the variable
trees (`params`, `batch_stats`) of the models in `acnet_jax.models`, and
recognise the blocks of `acnet_jax.layers` by their parameter names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from acnet_jax.errors import InputError
from acnet_jax.layers import ACB_BRANCHES, BN_EPSILON, pad_to_centre

Tree = Mapping[str, Any]
Block = tuple[dict[str, Any], dict[str, Any] | None]
ACB_KEYS = frozenset(ACB_BRANCHES) | {f'{b}_bn' for b in ACB_BRANCHES}
SHARED_BN = 'bn'  # The one BN of an ACB without branch BNs.


class FusionError(InputError):
  """The variables do not have the structure the transform expects."""


def fold_batchnorm(kernel: jnp.ndarray, mean: jnp.ndarray, var: jnp.ndarray,
                   scale: jnp.ndarray | float = 1.0, bias: jnp.ndarray | float = 0.0,
                   eps: float = BN_EPSILON) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(W, BN) -> (W t, beta - mu t), t = gamma / sqrt(var + eps). Kernel is HWIO."""
  t = scale / jnp.sqrt(var + eps)
  return kernel * t, bias - mean * t


def block_to_conv(params: Tree, stats: Tree, path: str) -> tuple[jnp.ndarray, jnp.ndarray]:
  """One ConvBN or ACB block's variables -> (kernel, bias) of the equal conv."""
  if _is_acb(params, stats, path) and SHARED_BN in (set(params) | set(stats)):
    kernels = [_kernel(params, branch, path) for branch in ACB_BRANCHES if branch in params]
    return _fold(add_centred(kernels), params, stats, SHARED_BN, path)
  folded = [_fold(_kernel(params, conv, path), params, stats, bn, path)
            for conv, bn in _conv_bn_pairs(params, stats)]
  return add_centred([k for k, _ in folded]), sum(b for _, b in folded)


def add_centred(kernels: list[jnp.ndarray]) -> jnp.ndarray:
  """Sum of HWIO kernels of odd sizes, each zero-padded around the largest's centre."""
  height = max(k.shape[0] for k in kernels)
  width = max(k.shape[1] for k in kernels)
  return sum(pad_to_centre(k, height, width) for k in kernels)


def fuse_params(params: Tree, batch_stats: Tree | None) -> tuple[dict, dict]:
  """Variables of an `acnet` or `normal` model -> variables of its `deploy` model.

  Every ConvBN and every ACB becomes `{'conv': {'kernel', 'bias'}}`. BatchNorms
  that do not directly follow a conv (pre-activation BNs) stay, and are the
  only entries of the returned batch_stats. Variables already in deploy form
  come back unchanged.
  """
  def to_deploy(p: Tree, s: Tree, path: str) -> Block:
    kernel, bias = block_to_conv(p, s, path)
    return {'conv': {'kernel': kernel, 'bias': bias}}, None

  new_params, new_stats, _ = _map_blocks(params, batch_stats or {}, _is_block, to_deploy)
  return new_params, new_stats


def acnet_to_normal(params: Tree, batch_stats: Tree | None,
                    normal_params: Tree) -> tuple[dict, dict]:
  """Variables of an `acnet` model -> variables of its `normal` (baseline) model.

  Each ACB becomes the block the baseline has at its place, computing exactly
  what the ACB did in eval mode: a ConvBN whose BN only adds the fused bias
  (gamma 1, mean 0, var 1 - eps), or, at a pre-activation site, a conv with the
  fused bias. It is the starting point for fine-tuning the plain architecture
  from a trained ACNet. `normal_params` is the baseline's params tree (arrays
  or `jax.eval_shape` structs): it says which block each site is, and the
  result is checked against it.
  """
  def to_normal_block(p: Tree, s: Tree, path: str) -> Block:
    kernel, bias = block_to_conv(p, s, path)
    target = _subtree(normal_params, path)
    if _is_conv_bn(target, {}):  # The template's params hold both conv and bn.
      channels = bias.shape
      return ({'conv': {'kernel': kernel}, 'bn': {'scale': jnp.ones(channels), 'bias': bias}},
              {'bn': {'mean': jnp.zeros(channels), 'var': jnp.full(channels, 1.0 - BN_EPSILON)}})
    return {'conv': {'kernel': kernel, 'bias': bias}}, None

  new_params, new_stats, count = _map_blocks(params, batch_stats or {}, _is_acb, to_normal_block)
  if count == 0:
    raise FusionError('acnet_to_normal found no ACB: these are not the variables of '
                      "an 'acnet' model")
  _check_same_shapes(new_params, normal_params)
  return new_params, new_stats


def _subtree(tree: Tree, path: str) -> Tree:
  node = tree
  for key in path.split('/'):
    if not isinstance(node, Mapping) or key not in node:
      raise FusionError(f"the normal model has no block at '{path}': not the same architecture")
    node = node[key]
  return node


def _check_same_shapes(actual: Tree, expected: Tree) -> None:
  flat = lambda tree: {'/'.join(str(k.key) for k in path): jnp.shape(leaf)
                       for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}
  got, want = flat(actual), flat(expected)
  for path in sorted(got.keys() | want.keys()):
    if got.get(path) != want.get(path):
      raise FusionError(f"'{path}' would have shape {got.get(path)} but the normal model has "
                        f'{want.get(path)}: not the same architecture')


def _is_acb(params: Tree, stats: Tree, path: str) -> bool:
  keys = set(params) | set(stats)
  if not keys or not keys <= ACB_KEYS | {SHARED_BN} or keys == {SHARED_BN}:
    return False
  if 'square' not in params:
    raise FusionError(f"ACB at '{path}' has no 'square' kernel (it has {sorted(keys)})")
  return True


def _is_conv_bn(params: Tree, stats: Tree) -> bool:
  conv = params.get('conv')
  return (set(params) | set(stats)) == {'conv', 'bn'} and isinstance(conv, Mapping) \
      and set(conv) == {'kernel'}


def _is_block(params: Tree, stats: Tree, path: str) -> bool:
  return _is_conv_bn(params, stats) or _is_acb(params, stats, path)


def _conv_bn_pairs(params: Tree, stats: Tree) -> list[tuple[str, str]]:
  if _is_conv_bn(params, stats):
    return [('conv', 'bn')]
  return [(b, f'{b}_bn') for b in ACB_BRANCHES if b in params]


def _kernel(params: Tree, conv: str, path: str) -> jnp.ndarray:
  try:
    return params[conv]['kernel']
  except (KeyError, TypeError):
    raise FusionError(f"no kernel at '{path}/{conv}'") from None


def _fold(kernel: jnp.ndarray, params: Tree, stats: Tree, bn: str,
          path: str) -> tuple[jnp.ndarray, jnp.ndarray]:
  moments = stats.get(bn)
  if not isinstance(moments, Mapping) or not {'mean', 'var'} <= set(moments):
    raise FusionError(
        f"no batch statistics (mean, var) for the BN at '{path}/{bn}': pass the "
        "model's 'batch_stats' collection, from the same model as the params")
  affine = params.get(bn, {})
  channels = kernel.shape[-1]
  for name, value in [*moments.items(), *affine.items()]:
    if jnp.shape(value) != (channels,):
      raise FusionError(
          f"'{path}/{bn}/{name}' has shape {jnp.shape(value)} but the conv before it "
          f'has {channels} output channels: params and batch_stats '
          'come from different models')
  return fold_batchnorm(kernel, moments['mean'], moments['var'],
                        affine.get('scale', 1.0), affine.get('bias', 0.0))


def _map_blocks(params: Tree, stats: Tree,
                is_block: Callable[[Tree, Tree, str], bool],
                convert: Callable[[Tree, Tree, str], Block],
                path: str = '') -> tuple[dict, dict, int]:
  """Rebuilds (params, stats), replacing each block that `is_block` accepts."""
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
    if is_block(p, s, child_path):
      block_params, block_stats = convert(p, s, child_path)
      count += 1
    else:
      block_params, block_stats, n = _map_blocks(p, s, is_block, convert, child_path)
      count += n
    if block_params:
      new_params[key] = block_params
    if block_stats:
      new_stats[key] = block_stats
  return _sorted(new_params), _sorted(new_stats), count


def _sorted(tree: dict[str, Any]) -> dict[str, Any]:
  return {k: tree[k] for k in sorted(tree)}

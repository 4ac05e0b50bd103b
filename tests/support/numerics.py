"""Numerical test helpers: tolerances derived from float rounding, random but
valid BatchNorm variables, the conv fusion makes of a block."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from acnet_jax.blocks.conv_bn import ConvBias
from acnet_jax.fusion import block_to_conv

# Tolerances from float32 arithmetic (unit roundoff u = 2**-24 ~ 6e-8), not
# from what one machine printed. Two exact computations of one conv (an ACB's
# branches vs its fused kernel, stacked vs per-branch) sum the same n <= 400
# products in another order: about sqrt(n) u ~ 1e-6 of the output's scale, as
# rounding errors add like a random walk; 1e-5 leaves a 10x margin (worst
# case n u ~ 2e-5 needs every error to point the same way).
BLOCK_RTOL = 1e-5
# Gradients through a BN in train mode: its backward pass subtracts nearly
# equal sums (the gradient minus its batch mean and its component along the
# normalised output), which can cost another factor of ten relative to the
# result (measured: up to 6.5e-6 over the cases of tests/blocks/test_online.py).
# A real difference (a wrong scale, padding or branch) is of order 1.
TRAIN_GRADIENT_RTOL = 10 * BLOCK_RTOL
# A whole model compounds that over its tens of layers (and BN folding adds a
# few roundings per layer): 1e-4. A real fusion error is of order 1.
MODEL_RTOL = 1e-4


def randomize_batch_norm(
  variables: dict[str, Any], seed: int, spread: float = 1.0
) -> dict[str, Any]:
  """Replaces every BN scale, bias, mean and var, and every online branch's
  scale (`<branch>_scale`), by random, valid values.

  `spread` scales how far they move from the identity BN (1, 0, 0, 1). Drawn
  with numpy: a jax.random draw per leaf shape would compile for minutes on
  deep models.
  """
  rng = np.random.default_rng(seed)
  leaves, treedef = jax.tree_util.tree_flatten_with_path(variables)
  new = []
  for path, leaf in leaves:
    name = path[-1].key
    is_bn = any('bn' in str(p.key) for p in path[:-1])
    shape = np.shape(leaf)
    if name == 'scale' or name.endswith('_scale'):
      leaf = 1.0 + spread * rng.uniform(-0.5, 0.5, shape)
    elif name == 'bias' and is_bn:
      leaf = spread * 0.3 * rng.normal(size=shape)
    elif name == 'mean':
      leaf = np.asarray(leaf) + spread * 0.3 * rng.normal(size=shape)
    elif name == 'var':
      leaf = np.asarray(leaf) * np.exp(spread * rng.uniform(-0.7, 0.7, shape))
    new.append(jnp.asarray(leaf, jnp.float32))
  return jax.tree_util.tree_unflatten(treedef, new)


def max_relative_error(actual: jax.Array, expected: jax.Array) -> float:
  """max |actual - expected| / max |expected|."""
  return float(jnp.max(jnp.abs(actual - expected)) / jnp.max(jnp.abs(expected)))


def fused_conv_output(block: Any, variables: dict[str, Any], x: jax.Array) -> jax.Array:
  """The output of the one conv that `fusion` makes of a block (ACB, DBB, ...)."""
  kernel, bias = block_to_conv(variables['params'], variables['batch_stats'], 'block')
  conv = ConvBias(block.features, block.kernel_size, block.strides, block.feature_group_count)
  return conv.apply({'params': {'conv': {'kernel': kernel, 'bias': bias}}}, x, train=False)


def init_block(block: Any, x: jax.Array, seed: int = 0) -> dict[str, Any]:
  """Jitted, with the 'rbg' generator: eager init compiles op by op (slow)."""
  return jax.jit(lambda key: block.init(key, x, train=False))(jax.random.key(seed, impl='rbg'))


def eval_and_fused_outputs(
  block: Any, variables: dict[str, Any], x: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """(the block's eval-mode output, the output of the conv fusion makes of it), jitted."""
  return jax.jit(lambda v, x: (block.apply(v, x, train=False), fused_conv_output(block, v, x)))(
    variables, x
  )

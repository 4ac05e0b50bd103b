"""Shared test helpers: random but valid BatchNorm variables."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def randomize_batch_norm(variables: dict[str, Any], key: jax.Array,
                         spread: float = 1.0) -> dict[str, Any]:
  """Replaces every BN scale, bias, mean and var by random, valid values.

  `spread` scales how far they move from the identity BN (1, 0, 0, 1).
  """
  leaves, treedef = jax.tree_util.tree_flatten_with_path(variables)
  keys = jax.random.split(key, len(leaves))
  new = []
  for (path, leaf), k in zip(leaves, keys):
    name = path[-1].key
    is_bn = any('bn' in str(p.key) for p in path[:-1])
    if name == 'scale':
      leaf = 1.0 + spread * jax.random.uniform(k, leaf.shape, minval=-0.5, maxval=0.5)
    elif name == 'bias' and is_bn:
      leaf = spread * 0.3 * jax.random.normal(k, leaf.shape)
    elif name == 'mean':
      leaf = leaf + spread * 0.3 * jax.random.normal(k, leaf.shape)
    elif name == 'var':
      leaf = leaf * jnp.exp(spread * jax.random.uniform(k, leaf.shape, minval=-0.7, maxval=0.7))
    new.append(leaf)
  return jax.tree_util.tree_unflatten(treedef, new)


def max_relative_error(actual: jax.Array, expected: jax.Array) -> float:
  """max |actual - expected| / max |expected|."""
  return float(jnp.max(jnp.abs(actual - expected)) / jnp.max(jnp.abs(expected)))

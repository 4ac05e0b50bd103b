"""The paper's kernel-skeleton measurements on deploy variables (Sec. 4.4).

A fused KxK kernel has a *skeleton* (its centre row and column, where an ACB
adds its Kx1 and 1xK kernels), four *corners*, and, for K >= 5, a *border*
(the outer ring). The paper reads ACNet's effect off two numbers per kernel
position: the mean magnitude |w| there, and the accuracy lost when every
kernel is zeroed there. Both are pure functions of the deploy `params` tree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Tree = Mapping[str, Any]


def corners(k: int) -> np.ndarray:
  mask = np.zeros((k, k), bool)
  mask[[0, 0, -1, -1], [0, -1, 0, -1]] = True
  return mask


def skeleton(k: int) -> np.ndarray:
  mask = np.zeros((k, k), bool)
  mask[k // 2, :] = mask[:, k // 2] = True
  return mask


def border(k: int) -> np.ndarray:
  """The outer ring; empty below 5x5, where it would be all but the centre."""
  mask = np.zeros((k, k), bool)
  if k >= 5:
    mask[[0, -1], :] = mask[:, [0, -1]] = True
  return mask


# Regions zeroed by the pruning analysis, as masks of a KxK kernel.
REGIONS: dict[str, Callable[[int], np.ndarray]] = {
  'corners': corners,
  'skeleton': skeleton,
  'border': border,
}


def is_square_kernel(name: str, leaf: Any) -> bool:
  """A KxK conv kernel (HWIO) with K > 1."""
  return name == 'kernel' and jnp.ndim(leaf) == 4 and leaf.shape[0] == leaf.shape[1] > 1


def square_kernels(params: Tree) -> dict[str, jax.Array]:
  """'path/to/conv' -> HWIO kernel, for every KxK conv kernel with K > 1."""
  found = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    names = [str(p.key) for p in path]
    if is_square_kernel(names[-1], leaf):
      found['/'.join(names[:-1])] = leaf
  return found


def position_magnitudes(kernel: jax.Array) -> np.ndarray:
  """Mean |w| at each of the KxK positions (over input and output channels),
  divided by the largest of them: the paper's normalised magnitude matrix."""
  magnitude = np.asarray(jnp.mean(jnp.abs(kernel), axis=(2, 3)), np.float64)
  return magnitude / magnitude.max()


def average_magnitudes(params: Tree) -> dict[int, np.ndarray]:
  """K -> the mean over layers of `position_magnitudes` of their KxK kernels."""
  by_size: dict[int, list[np.ndarray]] = {}
  for kernel in square_kernels(params).values():
    by_size.setdefault(kernel.shape[0], []).append(position_magnitudes(kernel))
  return {k: np.mean(mats, axis=0) for k, mats in sorted(by_size.items())}


def prune(params: Tree, region: str) -> Any:
  """`params` with the region's positions zeroed in every KxK kernel (K > 1)."""
  mask_of = REGIONS[region]

  def zero_region(path, leaf):
    if not is_square_kernel(str(path[-1].key), leaf):
      return leaf
    keep = ~mask_of(leaf.shape[0])
    return leaf * jnp.asarray(keep, leaf.dtype)[:, :, None, None]

  return jax.tree_util.tree_map_with_path(zero_region, params)


def regions_for(params: Tree) -> list[str]:
  """The regions that change something in this model: 'border' only when it
  has a kernel of 5x5 or larger."""
  sizes = {kernel.shape[0] for kernel in square_kernels(params).values()}
  return [name for name in REGIONS if any(REGIONS[name](k).any() for k in sizes)]

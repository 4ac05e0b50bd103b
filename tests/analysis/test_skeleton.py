"""Kernel regions, magnitudes and pruning of deploy kernels."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from acnet_jax.analysis import skeleton


@pytest.mark.parametrize(
  'k,region,kept',
  [
    (3, 'corners', 5),
    (3, 'skeleton', 4),
    (3, 'border', 9),
    (5, 'corners', 21),
    (5, 'skeleton', 16),
    (5, 'border', 9),
  ],
)
def test_pruning_an_all_ones_kernel_keeps_the_rest(k, region, kept):
  params = {
    'block': {'conv': {'kernel': jnp.ones((k, k, 2, 3)), 'bias': jnp.ones(3)}},
    'head': {'kernel': jnp.ones((4, 10)), 'bias': jnp.ones(10)},
    'shortcut': {'kernel': jnp.ones((1, 1, 2, 3))},
  }
  pruned = skeleton.prune(params, region)
  kernel = np.asarray(pruned['block']['conv']['kernel'])
  assert kernel.sum() == kept * 2 * 3
  assert np.all(kernel.sum(axis=(2, 3)) % 6 == 0)  # Whole positions, every channel.
  # Only KxK kernels with K > 1 change.
  for path in [('block', 'conv', 'bias'), ('head', 'kernel'), ('shortcut', 'kernel')]:
    np.testing.assert_array_equal(_get(pruned, path), _get(params, path))


def test_regions_on_a_5x5_kernel():
  assert np.argwhere(skeleton.corners(5)).tolist() == [[0, 0], [0, 4], [4, 0], [4, 4]]
  expected_skeleton = np.zeros((5, 5), bool)
  expected_skeleton[2], expected_skeleton[:, 2] = True, True
  np.testing.assert_array_equal(skeleton.skeleton(5), expected_skeleton)
  assert not skeleton.border(5)[1:4, 1:4].any() and skeleton.border(5).sum() == 16
  three = {'c': {'kernel': jnp.ones((3, 3, 1, 1))}}
  assert skeleton.regions_for(three) == ['corners', 'skeleton']
  assert skeleton.regions_for({**three, 'd': {'kernel': jnp.ones((5, 5, 1, 1))}}) == [
    'corners',
    'skeleton',
    'border',
  ]


def test_magnitudes_are_normalised_per_layer_then_averaged():
  first = jnp.zeros((3, 3, 2, 2)).at[1, 1].set(-4.0).at[0, 0, 0, 0].set(2.0)
  second = jnp.ones((3, 3, 1, 1)).at[2, 2].set(3.0)
  params = {
    'a': {'kernel': first},
    'b': {'kernel': second},
    'c': {'kernel': jnp.ones((1, 1, 2, 2))},
  }
  assert set(skeleton.square_kernels(params)) == {'a', 'b'}
  expected_first = np.zeros((3, 3))
  expected_first[1, 1], expected_first[0, 0] = 1.0, 0.125  # mean |w|: 4 and 0.5.
  expected_second = np.full((3, 3), 1 / 3)
  expected_second[2, 2] = 1.0
  np.testing.assert_allclose(skeleton.position_magnitudes(first), expected_first)
  averages = skeleton.average_magnitudes(params)
  assert list(averages) == [3]
  np.testing.assert_allclose(averages[3], (expected_first + expected_second) / 2)


def _get(tree, path):
  for key in path:
    tree = tree[key]
  return np.asarray(tree)

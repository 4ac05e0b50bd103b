"""The per-channel sums BatchNorm uses on the CPU add every value once, and
round nearly as a pairwise sum does: within (RUN - 1 + ceil(log2 m) +
ceil(log2 N) + LAST_ROWS - 1) U sum|x| of the exact sum, whatever the shape."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acnet_jax.xla_cpu.pairwise_sum import LAST_ROWS, RUN, channel_sums, pairwise_sum

U = 2.0**-24  # float32's unit roundoff.
SHAPES = [
  (1, 1, 1, 3),
  (5, 3, 7, 2),
  (6, 4, 4, 5),
  pytest.param((64, 8, 8, 16), marks=pytest.mark.full),
  (7, 9, 1, 1),
]


@pytest.mark.parametrize('shape', SHAPES)
def test_every_value_is_added_once(shape):
  # Small integers add exactly in float32, in any order.
  x = jax.random.randint(jax.random.key(0), shape, -50, 50).astype(jnp.float32)
  np.testing.assert_array_equal(jax.jit(channel_sums)(x), np.asarray(x).sum((0, 1, 2)))


@pytest.mark.parametrize('n', [1, 2, 3, 5, 8, 13])
def test_pairwise_sum_over_any_axis_length(n):
  x = jax.random.randint(jax.random.key(1), (4, n, 3), -50, 50).astype(jnp.float32)
  np.testing.assert_array_equal(pairwise_sum(x, axis=1), np.asarray(x).sum(1))


def levels(shape: tuple[int, ...]) -> int:
  """Roundings a value passes through on its way into the sum."""
  per_example = math.prod(shape[1:-1])
  run = math.gcd(per_example, RUN)
  return (
    (run - 1)
    + math.ceil(math.log2(per_example // run))
    + math.ceil(math.log2(shape[0]))
    + LAST_ROWS
    - 1
  )


@pytest.mark.parametrize(
  'shape', [pytest.param((64, 32, 32, 16), marks=pytest.mark.full), (33, 5, 7, 8)]
)
def test_float32_sums_are_within_the_pairwise_bound(shape):
  # An offset mean, as a conv's output has, so that cancellation is not the error's source.
  x = jax.random.normal(jax.random.key(2), shape) * 3.0 + 1.5
  exact = np.asarray(x, np.float64).sum((0, 1, 2))
  magnitude = np.abs(np.asarray(x, np.float64)).sum((0, 1, 2))
  error = np.abs(np.asarray(jax.jit(channel_sums)(x), np.float64) - exact)
  np.testing.assert_array_less(error, levels(shape) * U * magnitude)

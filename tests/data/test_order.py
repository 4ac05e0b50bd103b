"""Which examples each step sees: pure functions of (seed, step)."""

from __future__ import annotations

import numpy as np
import pytest

from acnet_jax.data import order
from acnet_jax.errors import InputError


def test_epoch_order_is_a_function_of_seed_and_epoch():
  a = order.epoch_permutation(0, 3, 100)
  np.testing.assert_array_equal(a, order.epoch_permutation(0, 3, 100))
  assert not np.array_equal(a, order.epoch_permutation(0, 4, 100))
  assert not np.array_equal(a, order.epoch_permutation(1, 3, 100))
  assert sorted(a) == list(range(100))


def test_training_drops_the_last_partial_batch():
  # 10 examples, batch 3: 3 steps an epoch; example order restarts at step 3.
  steps = [order.train_batch_indices(0, s, 3, 3, 10) for s in range(3)]
  seen = np.concatenate(steps)
  assert len(seen) == 9 and len(set(seen)) == 9
  np.testing.assert_array_equal(
    order.train_batch_indices(0, 3, 3, 3, 10), order.epoch_permutation(0, 1, 10)[:3]
  )


def test_evaluation_counts_every_example_once():
  batches = order.eval_batches(10, 4)
  assert all(len(i) == 4 for i, _ in batches)
  counted = np.concatenate([i[m] for i, m in batches])
  np.testing.assert_array_equal(counted, np.arange(10))


def test_a_random_subset_is_sorted_distinct_and_not_the_first_examples():
  subset = order.random_subset(100, 10, seed=0)
  assert len(set(subset)) == 10 and list(subset) == sorted(subset)
  assert list(subset) != list(range(10))
  np.testing.assert_array_equal(subset, order.random_subset(100, 10, seed=0))
  np.testing.assert_array_equal(order.random_subset(5, 0, seed=0), np.arange(5))
  np.testing.assert_array_equal(order.random_subset(5, 9, seed=0), np.arange(5))


def test_process_shares_tile_the_global_batch():
  shares = [order.process_share(12, p, 3) for p in range(3)]
  assert shares == [(0, 4), (4, 8), (8, 12)]
  with pytest.raises(InputError, match='cannot be split evenly over 5 processes'):
    order.process_share(12, 0, 5)

"""Which examples each step sees, and which process reads which of them.

Pure functions of (seed, step): a resumed run sees exactly the batches an
uninterrupted one would, on either input path.
"""

from __future__ import annotations

import functools

import numpy as np

from acnet_jax.errors import InputError


@functools.lru_cache(maxsize=2)
def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The training order of one epoch: a pure function of (seed, epoch).

  Cached (read-only): every step of an epoch slices it, and for ImageNet's
  1.28 M images drawing it takes tens of milliseconds."""
  order = np.random.default_rng([seed, epoch]).permutation(num_examples).astype(np.int32)
  order.setflags(write=False)
  return order


def train_batch_indices(
  seed: int, step: int, steps_per_epoch: int, batch_size: int, num_examples: int
) -> np.ndarray:
  """Indices of the examples of training step `step`; the last partial batch of
  each epoch is dropped."""
  epoch, position = divmod(step, steps_per_epoch)
  order = epoch_permutation(seed, epoch, num_examples)
  return order[position * batch_size : (position + 1) * batch_size]


def eval_batches(num_examples: int, batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
  """(indices, mask) per batch; the last batch is padded and masked so that
  every example counts exactly once."""
  batches = []
  for start in range(0, num_examples, batch_size):
    indices = np.arange(start, start + batch_size, dtype=np.int32)
    mask = indices < num_examples
    batches.append((np.where(mask, indices, 0).astype(np.int32), mask))
  return batches


def random_subset(num_examples: int, size: int, seed: int) -> np.ndarray:
  """Sorted indices of `size` examples drawn at random (all if size is 0 or
  larger): the first examples of a folder could all be one class."""
  if not size or size >= num_examples:
    return np.arange(num_examples)
  return np.sort(np.random.default_rng(seed).permutation(num_examples)[:size])


def process_share(
  global_batch_size: int, process_index: int, process_count: int
) -> tuple[int, int]:
  """[start, stop) of this process's contiguous share of a global batch."""
  if global_batch_size % process_count or not 0 <= process_index < process_count:
    raise InputError(
      f'a global batch of {global_batch_size} cannot be split evenly over '
      f'{process_count} processes (process {process_index})'
    )
  local = global_batch_size // process_count
  return process_index * local, (process_index + 1) * local

"""How batches reach the jitted steps: from splits held on device, or streamed
from storage.

A feed gives the host-side inputs of a step (`train_inputs(step)`, sharded on
the mesh's data axis) and the pure function that turns them into a
normalised float batch inside the step (`prepare_train`), and the same for
evaluation. Both kinds are pure functions of (seed, step), so a resumed run
sees exactly the batches an uninterrupted one would.

- `MemoryFeed`: CIFAR-size data (`memory.DATASETS`), the whole uint8 split
  replicated on every device, loaded on first use; the host sends only batch
  indices, and the step gathers, pads, crops and flips on device.
- `StreamFeed`: data beyond memory (ImageNet): `stream` decodes and augments
  each process's share of every batch on host threads while the devices
  train; the step only normalises.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding

from acnet_jax.data import keys, memory, order, stream
from acnet_jax.data.image_folder import ImageFolderSource, header_size, image_folder_sources
from acnet_jax.data.on_device import augment, normalize
from acnet_jax.errors import InputError

PIPELINES = ('auto', 'memory', 'stream')
# The in-memory path holds both splits on every device; past this it streams.
MEMORY_LIMIT_BYTES = 4 << 30
# Images whose sizes decide whether an image folder fits the in-memory path.
SIZE_SAMPLE = 32

Inputs = tuple[jax.Array, ...]


class Sharder:
  """Host arrays -> arrays on the mesh, from each process's own share."""

  def __init__(self, replicated: NamedSharding, batch_sharding: NamedSharding):
    self.replicated = replicated
    self.batch_sharding = batch_sharding

  def replicate(self, tree: Any) -> Any:
    """Host values, the same in every process -> arrays replicated on the mesh."""
    return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(self.replicated, np.asarray(x)), tree
    )

  def shard_global(self, global_batch: np.ndarray) -> jax.Array:
    """A global batch, known to every process -> sharded on 'data'."""
    start, stop = order.process_share(len(global_batch), jax.process_index(), jax.process_count())
    return self.shard_local(global_batch[start:stop], len(global_batch))

  def shard_local(self, local_batch: np.ndarray, global_size: int) -> jax.Array:
    """This process's contiguous share of a global batch -> sharded on 'data'."""
    return jax.make_array_from_process_local_data(
      self.batch_sharding, local_batch, (global_size, *local_batch.shape[1:])
    )


class MemoryFeed:
  """Both splits as uint8 arrays replicated on the mesh, each loaded when first used."""

  def __init__(self, config: ml_collections.ConfigDict, sharder: Sharder):
    self.config = config
    self.sharder = sharder
    self.info = memory.dataset_info(config)
    self.num_train = len(memory.split_indices(config, self.info, 'train'))
    self.num_eval = self.info.sizes['test']
    self.image_shape = self.info.image_shape
    self.class_names = self.info.class_names
    self.wait_seconds = 0.0  # Time the training loop spent getting inputs.

  @functools.cached_property
  def train_data(self) -> tuple[jax.Array, jax.Array]:
    split = memory.load_split(self.config, self.info, 'train')
    return self.sharder.replicate((split.images, split.labels))

  @functools.cached_property
  def eval_data(self) -> tuple[jax.Array, jax.Array]:
    split = memory.load_split(self.config, self.info, 'test')
    return self.sharder.replicate((split.images, split.labels))

  def train_inputs(self, step: int, steps_per_epoch: int) -> Inputs:
    start = time.perf_counter()
    indices = order.train_batch_indices(
      self.config.seed, step, steps_per_epoch, self.config.batch_size, self.num_train
    )
    inputs = (*self.train_data, self.sharder.shard_global(indices))
    self.wait_seconds += time.perf_counter() - start
    return inputs

  def prepare_train(self, inputs: Inputs, step: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Gather the batch, augment it (a pure function of seed and step), normalise."""
    images, labels, indices = inputs
    x = images[indices]
    if self.config.augment:
      x = augment(x, jax.random.fold_in(keys.seed_key(self.config.seed), step))
    x = normalize(x, self.config.pixel_mean, self.config.pixel_std)
    return jax.lax.with_sharding_constraint(x, self.sharder.batch_sharding), labels[indices]

  def eval_inputs(self) -> Iterator[tuple[Inputs, jax.Array]]:
    for indices, mask in order.eval_batches(self.num_eval, self.config.eval_batch_size):
      yield (*self.eval_data, self.sharder.shard_global(indices)), self.sharder.shard_global(mask)

  def prepare_eval(self, inputs: Inputs) -> tuple[jax.Array, jax.Array]:
    images, labels, indices = inputs
    return normalize(images[indices], self.config.pixel_mean, self.config.pixel_std), labels[
      indices
    ]


class StreamFeed:
  """Batches decoded and augmented on host threads, each process its share."""

  def __init__(
    self,
    train: stream.Source,
    evaluation: stream.Source,
    config: ml_collections.ConfigDict,
    sharder: Sharder,
  ):
    self.config = config
    self.sharder = sharder
    self.train_source, self.eval_source = train, evaluation
    self.num_train, self.num_eval = len(train), len(evaluation)
    self.image_shape = (config.image_size, config.image_size, 3)
    self.class_names = train.class_names
    self.workers = config.data_workers or len(os.sched_getaffinity(0))
    self._stream: Iterator[tuple[np.ndarray, np.ndarray]] | None = None
    self._next_step = -1
    self.wait_seconds = 0.0  # Time the training loop spent waiting for batches.

  def train_inputs(self, step: int, steps_per_epoch: int) -> Inputs:
    if step != self._next_step:  # A (re)start: the stream begins at any step.
      self._stream = stream.train_batches(
        self.train_source,
        seed=self.config.seed,
        global_batch_size=self.config.batch_size,
        steps_per_epoch=steps_per_epoch,
        image_size=self.config.image_size,
        start_step=step,
        num_steps=self.config.num_epochs * steps_per_epoch - step,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        num_workers=self.workers,
      )
    start = time.perf_counter()
    images, labels = next(self._stream)
    self.wait_seconds += time.perf_counter() - start
    self._next_step = step + 1
    size = self.config.batch_size
    return self.sharder.shard_local(images, size), self.sharder.shard_local(labels, size)

  def prepare_train(self, inputs: Inputs, step: jax.Array) -> tuple[jax.Array, jax.Array]:
    del step  # Augmented on the host already.
    return self.prepare_eval(inputs)

  def eval_inputs(self) -> Iterator[tuple[Inputs, jax.Array]]:
    size = self.config.eval_batch_size
    for images, labels, mask in stream.eval_batches(
      self.eval_source,
      global_batch_size=size,
      image_size=self.config.image_size,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
      num_workers=self.workers,
    ):
      yield (
        (self.sharder.shard_local(images, size), self.sharder.shard_local(labels, size)),
        self.sharder.shard_local(mask, size),
      )

  def prepare_eval(self, inputs: Inputs) -> tuple[jax.Array, jax.Array]:
    images, labels = inputs
    return normalize(images, self.config.pixel_mean, self.config.pixel_std), labels


Feed = MemoryFeed | StreamFeed


def validate_dataset(config: ml_collections.ConfigDict) -> None:
  """A data set this project reads: in memory, or streamed from tfds by name."""
  if config.pipeline not in PIPELINES:
    raise InputError(f'unknown pipeline {config.pipeline!r}; valid: {", ".join(PIPELINES)}')
  if config.dataset in memory.DATASETS:
    return
  import tensorflow_datasets as tfds  # Slow to import; only for names of other data sets.

  if config.dataset not in tfds.list_builders(with_community_datasets=False):
    raise InputError(
      f'unknown dataset {config.dataset!r}; valid: '
      f'{", ".join(memory.DATASETS)}, or a tfds image classification '
      'data set by name, streamed (e.g. imagenet2012)'
    )
  if config.pipeline == 'memory':
    raise InputError(
      f'the in-memory pipeline reads {", ".join(memory.DATASETS)}; '
      f'{config.dataset!r} streams: set pipeline to auto or stream'
    )


def choose_pipeline(config: ml_collections.ConfigDict) -> str:
  """'memory' or 'stream': CIFAR-size data in memory, the rest streamed."""
  if config.pipeline != 'auto':
    return config.pipeline
  if config.dataset not in memory.DATASETS:
    return 'stream'  # Any other tfds data set, e.g. imagenet2012.
  if config.dataset != 'image_folder':
    return 'memory'
  return 'memory' if fits_in_memory(config.data_dir) else 'stream'


def fits_in_memory(data_dir: str) -> bool:
  """Whether an image folder looks like one array: a sample of its training
  images share one size and both splits of that size fit MEMORY_LIMIT_BYTES."""
  train = ImageFolderSource(data_dir, 'train')
  sample = np.linspace(0, len(train) - 1, min(SIZE_SAMPLE, len(train))).astype(int)
  sizes = {header_size(train.name(int(i))) for i in sample}
  if len(sizes) != 1 or None in sizes:
    return False
  ((width, height),) = sizes
  count = sum(len(files) for _, _, files in os.walk(data_dir))
  return count * height * width * 3 <= MEMORY_LIMIT_BYTES


def create_feed(config: ml_collections.ConfigDict, sharder: Sharder) -> Feed:
  """The one face of both input paths: the config decides which."""
  validate_dataset(config)
  if choose_pipeline(config) == 'memory':
    return MemoryFeed(config, sharder)
  if config.dataset == 'synthetic':
    raise InputError("dataset 'synthetic' has no files to stream: use pipeline='memory'")
  if not config.image_size:
    raise InputError(
      'the streaming pipeline crops every image to image_size: set it, e.g. '
      '--config.image_size=224 (ImageNet) or 64 for a quick run'
    )
  if config.max_train_examples:
    raise InputError(
      'max_train_examples is for the in-memory pipeline; a streamed data set '
      'trains on all its images'
    )
  train, evaluation = stream_sources(config)
  if train.num_classes != config.num_classes:
    raise InputError(
      f'dataset {config.dataset!r} has {train.num_classes} classes but the '
      f'config says num_classes={config.num_classes}'
    )
  return StreamFeed(train, evaluation, config, sharder)


def stream_sources(config: ml_collections.ConfigDict) -> tuple[stream.Source, stream.Source]:
  if config.dataset == 'image_folder':
    return image_folder_sources(config.data_dir)
  split = config.eval_split or 'validation'  # tfds imagenet2012's held-out split.
  return (
    stream.tfds_source(config.dataset, config.data_dir or None, 'train'),
    stream.tfds_source(config.dataset, config.data_dir or None, split),
  )

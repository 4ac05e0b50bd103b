"""A run's own images for checking an exported model outside JAX: its test
split, and a calibration sample of the training split it trained on, both as
evaluation sees them (no augmentation; streamed data sets resized and
centre-cropped) and normalised as the exported function takes them.

Read through the run's data path (`feeds.choose_pipeline`): in-memory data
sets load only the examples asked for; streamed ones decode them from their
files.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import ml_collections
import numpy as np

from acnet_jax.data import feeds, memory, order, stream

# Images per batch when reading a streamed split (memory: the whole of it is in RAM anyway).
STREAM_BATCH = 256


def normalized(images: np.ndarray, config: ml_collections.ConfigDict) -> np.ndarray:
  """uint8 -> float32 (x / 255 - mean) / std per channel, as `on_device.normalize`."""
  x = images.astype(np.float32) / np.float32(255.0)
  return (x - np.asarray(config.pixel_mean, np.float32)) / np.asarray(config.pixel_std, np.float32)


@dataclasses.dataclass(frozen=True)
class Subset:
  """The examples of a stream source at `indices`, as a source."""

  source: stream.Source
  indices: np.ndarray

  @property
  def num_classes(self) -> int:
    return self.source.num_classes

  @property
  def class_names(self) -> tuple[str, ...]:
    return self.source.class_names

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, index: int) -> tuple[bytes, int]:
    return self.source[int(self.indices[index])]

  def name(self, index: int) -> str:
    return self.source.name(int(self.indices[index]))


def streamed(
  source: stream.Source, config: ml_collections.ConfigDict
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """(normalised images, labels) of every example of `source`, as evaluation crops them."""
  for images, labels, mask in stream.eval_batches(
    source,
    global_batch_size=STREAM_BATCH,
    image_size=config.image_size,
    process_index=0,
    process_count=1,
    num_workers=config.data_workers or len(os.sched_getaffinity(0)),
  ):
    yield normalized(images[mask], config), labels[mask]


def test_batches(config: ml_collections.ConfigDict) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """(normalised images, labels) covering the run's test split once."""
  if feeds.choose_pipeline(config) == 'stream':
    yield from streamed(feeds.stream_sources(config)[1], config)
    return
  info = memory.dataset_info(config)
  split = memory.load_split(config, info, 'test')
  for start in range(0, len(split), config.eval_batch_size):
    stop = start + config.eval_batch_size
    yield normalized(split.images[start:stop], config), split.labels[start:stop]


def num_train_examples(config: ml_collections.ConfigDict) -> int:
  """How many examples the run trained on."""
  if feeds.choose_pipeline(config) == 'stream':
    return len(feeds.stream_sources(config)[0])
  return len(memory.split_indices(config, memory.dataset_info(config), 'train'))


def calibration_indices(config: ml_collections.ConfigDict, count: int) -> np.ndarray:
  """`count` positions in the run's training examples (all where it has fewer),
  drawn with the run's seed: the first examples of a folder are often one class."""
  return order.random_subset(num_train_examples(config), count, config.seed)


def training_images(config: ml_collections.ConfigDict, positions: np.ndarray) -> np.ndarray:
  """The normalised training images at `positions` in the run's training examples."""
  if feeds.choose_pipeline(config) == 'stream':
    train = feeds.stream_sources(config)[0]
    return np.concatenate([images for images, _ in streamed(Subset(train, positions), config)])
  info = memory.dataset_info(config)
  indices = memory.split_indices(config, info, 'train')[positions]
  return normalized(memory.dataset_of(config).load(config, 'train', indices).images, config)

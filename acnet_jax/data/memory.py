"""Data sets held in memory as uint8 arrays (CIFAR-size): the table of them.

A CIFAR-sized split fits on any accelerator (50,000 x 32 x 32 x 3 bytes =
150 MB), so the whole split is loaded once and every batch is gathered and
augmented inside the jitted step (`feeds.MemoryFeed`). Each data set says what
it holds without loading it (`info`), and loads one split when asked
(`load`): evaluation never decodes the training split.

`DATASETS` is the table: a new in-memory data set is one entry there.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import os
from collections.abc import Callable

import ml_collections
import numpy as np
from absl import logging

from acnet_jax.data import order
from acnet_jax.data.image_folder import (
  ImageFolderSource,
  eval_split_of,
  header_size,
  image_folder_sources,
)
from acnet_jax.data.transforms import decode_image
from acnet_jax.errors import InputError

SPLITS = ('train', 'test')


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # uint8, (N, H, W, C)
  labels: np.ndarray  # int32, (N,)

  def __len__(self) -> int:
    return len(self.labels)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a data set holds, known without decoding it."""

  sizes: dict[str, int]  # examples per split ('train', 'test')
  image_shape: tuple[int, int, int]
  class_names: tuple[str, ...]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


@dataclasses.dataclass(frozen=True)
class InMemoryDataset:
  """`info(config)`; `load(config, split, indices)`: the examples at `indices`
  of the split, as arrays."""

  info: Callable[[ml_collections.ConfigDict], DatasetInfo]
  load: Callable[[ml_collections.ConfigDict, str, np.ndarray], Split]


# ------------------------------------------------------------------ synthetic


def synthetic_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
  """`image_size` square, 32 by default (CIFAR's)."""
  size = config.image_size or 32
  return size, size, 3


def synthetic_split(config: ml_collections.ConfigDict, split: str) -> Split:
  """Random uint8 images and labels; the test split is a quarter of the train one."""
  rng = np.random.default_rng([config.seed, SPLITS.index(split)])
  n = synthetic_sizes(config)[split]
  return Split(
    rng.integers(0, 256, (n, *synthetic_shape(config)), dtype=np.uint8),
    rng.integers(0, config.num_classes, (n,), dtype=np.int32),
  )


def synthetic_sizes(config: ml_collections.ConfigDict) -> dict[str, int]:
  return {'train': config.synthetic_examples, 'test': max(config.synthetic_examples // 4, 1)}


SYNTHETIC = InMemoryDataset(
  info=lambda config: DatasetInfo(
    synthetic_sizes(config),
    synthetic_shape(config),
    tuple(str(i) for i in range(config.num_classes)),
  ),
  load=lambda config, split, indices: subset(synthetic_split(config, split), indices),
)


def subset(split: Split, indices: np.ndarray) -> Split:
  return (
    split if len(indices) == len(split) else Split(split.images[indices], split.labels[indices])
  )


# ----------------------------------------------------------------------- tfds


# tfds's CIFAR is stored as PNG: lossless, so any decoder agrees.
def tfds_builder(config: ml_collections.ConfigDict, prepare: bool):
  """The tfds builder of the config's data set, prepared (downloaded) if `prepare`."""
  import tensorflow_datasets as tfds  # Slow to import; not needed for other data sets.

  name, data_dir = config.dataset, config.data_dir or None
  if data_dir and not os.path.isdir(data_dir):
    raise InputError(
      f'data_dir {data_dir!r} is not a folder: point it at a tfds data folder '
      f"that holds {name!r}, or leave it empty for tfds's default"
    )
  builder = tfds.builder(name, data_dir=data_dir)
  if prepare and not builder.is_prepared():
    from acnet_jax.data.download import download_and_prepare

    download_and_prepare(builder)
  return builder


def tfds_info(config: ml_collections.ConfigDict) -> DatasetInfo:
  builder = tfds_builder(config, prepare=True)
  splits = builder.info.splits
  for split in SPLITS:
    if split not in splits:
      raise InputError(
        f'{config.dataset} at {config.data_dir!r} has no {split!r} split '
        f'(it has {", ".join(splits)})'
      )
  return DatasetInfo(
    {split: splits[split].num_examples for split in SPLITS},
    tuple(builder.info.features['image'].shape),
    tuple(builder.info.features['label'].names),
  )


def tfds_split(config: ml_collections.ConfigDict, split: str, indices: np.ndarray) -> Split:
  import tensorflow_datasets as tfds

  builder = tfds_builder(config, prepare=True)
  logging.info('Loading %s/%s into memory.', config.dataset, split)
  images, labels = tfds.as_numpy(
    builder.as_dataset(split=split, batch_size=-1, as_supervised=True, shuffle_files=False)
  )
  return subset(Split(np.asarray(images, np.uint8), np.asarray(labels, np.int32)), indices)


TFDS = InMemoryDataset(info=tfds_info, load=tfds_split)


# --------------------------------------------------------------- image folder


def folder_source(config: ml_collections.ConfigDict, split: str) -> ImageFolderSource:
  """The folder's `train` split, or its evaluation split (val, else test) for 'test'."""
  return ImageFolderSource(
    config.data_dir, 'train' if split == 'train' else eval_split_of(config.data_dir)
  )


# Images whose headers are read for the size of a folder held in memory.
SIZE_PROBES = 32


def folder_info(config: ml_collections.ConfigDict) -> DatasetInfo:
  """The size is that of the first readable test image: the in-memory path
  needs one size (decoding checks it), and evaluation reads the test split."""
  train, test = image_folder_sources(config.data_dir)
  probes = range(min(SIZE_PROBES, len(test)))
  size = next((s for s in (header_size(test.name(i)) for i in probes) if s), None)
  if size is None:
    raise InputError(
      f'{test.name(0)} is not a readable image (nor are the next '
      f'{len(probes) - 1} of {test.root}/{test.split}); remove or replace them'
    )
  width, height = size
  return DatasetInfo(
    {'train': len(train), 'test': len(test)}, (height, width, 3), train.class_names
  )


def decode_split(source: ImageFolderSource, indices: np.ndarray) -> Split:
  """The images of the source at `indices` as one uint8 array; they must share one size."""
  logging.info('Decoding %d images of %s/%s into memory.', len(indices), source.root, source.split)
  decode = lambda i: decode_image(source[i][0], source.name(i))
  # PIL releases the GIL while it decodes: threads use every core.
  with concurrent.futures.ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:
    images = list(pool.map(decode, (int(i) for i in indices)))
  shapes = collections.Counter(image.shape for image in images)
  if len(shapes) > 1:
    (height, width, _), _ = shapes.most_common(1)[0]
    odd = [
      source.name(int(i)) for i, image in zip(indices, images) if image.shape[:2] != (height, width)
    ]
    raise InputError(
      f'the in-memory pipeline needs images of one size (most in {source.root}/{source.split} '
      f'are {width}x{height}); {len(odd)} differ, e.g. {", ".join(odd[:3])}. Stream them '
      'instead, cropped to one size: --config.pipeline=stream --config.image_size=N'
    )
  return Split(np.stack(images), source.labels[indices])


IMAGE_FOLDER = InMemoryDataset(
  info=folder_info,
  load=lambda config, split, indices: decode_split(folder_source(config, split), indices),
)


# ---------------------------------------------------------------------- table

DATASETS: dict[str, InMemoryDataset] = {
  'cifar10': TFDS,
  'cifar100': TFDS,
  'image_folder': IMAGE_FOLDER,
  'synthetic': SYNTHETIC,
}


def dataset_of(config: ml_collections.ConfigDict) -> InMemoryDataset:
  if config.dataset not in DATASETS:
    raise InputError(f'unknown dataset {config.dataset!r}; valid datasets: {", ".join(DATASETS)}')
  return DATASETS[config.dataset]


def dataset_info(config: ml_collections.ConfigDict) -> DatasetInfo:
  """What the config's data set holds; InputError if it has another number of
  classes than the config says."""
  info = dataset_of(config).info(config)
  if info.num_classes != config.num_classes:
    raise InputError(
      f'dataset {config.dataset!r} has {info.num_classes} classes but the '
      f'config says num_classes={config.num_classes}'
    )
  return info


def split_indices(config: ml_collections.ConfigDict, info: DatasetInfo, split: str) -> np.ndarray:
  """The examples of the split the run uses: all, or a random subset of the
  training split (`max_train_examples`)."""
  size = config.max_train_examples if split == 'train' else 0
  return order.random_subset(info.sizes[split], size, config.seed)


def load_split(config: ml_collections.ConfigDict, info: DatasetInfo, split: str) -> Split:
  return dataset_of(config).load(config, split, split_indices(config, info, split))

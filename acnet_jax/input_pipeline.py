"""Datasets as uint8 arrays, the epoch order, and on-device augmentation.

A CIFAR-sized split fits on any accelerator (50,000 x 32 x 32 x 3 bytes =
150 MB), so the whole split is loaded once and every batch is gathered and
augmented inside the jitted step: the host only sends batch indices.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from acnet_jax.errors import InputError

if TYPE_CHECKING:  # streaming builds on this module.
  from acnet_jax import streaming

DATASETS = ('cifar10', 'cifar100', 'image_folder', 'synthetic')
TFDS_NUM_CLASSES = {'cifar10': 10, 'cifar100': 100}
CROP_PADDING = 4


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # uint8, (N, H, W, C)
  labels: np.ndarray  # int32, (N,)

  def __len__(self) -> int:
    return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Dataset:
  train: Split
  test: Split
  num_classes: int


def load_dataset(name: str, data_dir: str | None, num_classes: int, seed: int,
                 max_train_examples: int = 0, synthetic_examples: int = 512) -> Dataset:
  """Loads both splits as uint8 arrays; `max_train_examples` > 0 keeps a random subset."""
  if name not in DATASETS:
    raise InputError(f'unknown dataset {name!r}; valid datasets: {", ".join(DATASETS)}')
  if name == 'synthetic':
    dataset = synthetic_dataset(num_classes, synthetic_examples, seed)
  elif name == 'image_folder':
    dataset = image_folder_dataset(data_dir)
  else:
    dataset = tfds_dataset(name, data_dir)
  if dataset.num_classes != num_classes:
    raise InputError(f'dataset {name!r} has {dataset.num_classes} classes but the config '
                     f'says num_classes={num_classes}')
  if max_train_examples and max_train_examples < len(dataset.train):
    # A random subset: the first examples of a folder could all be one class.
    keep = np.sort(np.random.default_rng(seed).permutation(len(dataset.train))[:max_train_examples])
    dataset = dataclasses.replace(
        dataset, train=Split(dataset.train.images[keep], dataset.train.labels[keep]))
  return dataset


def synthetic_dataset(num_classes: int, num_examples: int, seed: int,
                      image_size: int = 32) -> Dataset:
  rng = np.random.default_rng(seed)
  def split(n: int) -> Split:
    return Split(rng.integers(0, 256, (n, image_size, image_size, 3), dtype=np.uint8),
                 rng.integers(0, num_classes, (n,), dtype=np.int32))
  return Dataset(split(num_examples), split(max(num_examples // 4, 1)), num_classes)


def tfds_dataset(name: str, data_dir: str | None) -> Dataset:
  """CIFAR from the tfds catalog (stored as PNG: lossless, any decoder agrees)."""
  import tensorflow_datasets as tfds  # Slow to import; not needed for synthetic data.

  if data_dir and not os.path.isdir(data_dir):
    raise InputError(f'data_dir {data_dir!r} is not a folder: point it at a tfds data folder '
                     f'that holds {name!r}, or leave it empty for tfds\'s default')
  builder = tfds.builder(name, data_dir=data_dir or None)
  try:
    builder.download_and_prepare()
  except Exception as error:  # tfds's network and file errors name neither cause nor fix.
    raise InputError(
        f'tfds could not download or prepare {name!r} in {builder.data_dir} '
        f'({type(error).__name__}: {str(error).strip().splitlines()[-1][:300]}). Without '
        'internet, prepare it on a machine with internet and point --config.data_dir at '
        "that tfds data folder, or use --config.dataset=image_folder.") from error
  splits = {}
  for split in ('train', 'test'):
    if split not in builder.info.splits:
      raise InputError(f'{name} at {data_dir!r} has no {split!r} split '
                       f'(it has {", ".join(builder.info.splits)})')
    logging.info('Loading %s/%s into memory.', name, split)
    images, labels = tfds.as_numpy(builder.as_dataset(
        split=split, batch_size=-1, as_supervised=True, shuffle_files=False))
    splits[split] = Split(np.asarray(images, np.uint8), np.asarray(labels, np.int32))
  return Dataset(splits['train'], splits['test'], builder.info.features['label'].num_classes)


IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')


def check_class_folders(data_dir: str | None, splits: Sequence[str]) -> list[str]:
  """Stops with a clear message on a missing folder or split, a split without
  class folders, a class folder without images, or splits whose classes
  differ; returns the class names, sorted: the label order."""
  layout = 'a folder holding ' + ' and '.join(f'{split}/<class>/*.jpg' for split in splits)
  if not data_dir or not os.path.isdir(data_dir):
    raise InputError(f"dataset 'image_folder' needs data_dir= {layout}; got {data_dir!r}, "
                     'which is not a folder')
  classes = {}
  for split in splits:
    split_dir = os.path.join(data_dir, split)
    if not os.path.isdir(split_dir):
      raise InputError(f'{data_dir} has no {split}/ folder; it must be {layout}')
    classes[split] = sorted(d for d in os.listdir(split_dir)
                            if os.path.isdir(os.path.join(split_dir, d)))
    if not classes[split]:
      raise InputError(f'{split_dir} has no class folders; it must be {layout}')
    for label in classes[split]:
      files = os.listdir(os.path.join(split_dir, label))
      if not any(f.lower().endswith(IMAGE_EXTENSIONS) for f in files):
        raise InputError(f'{split_dir}/{label} holds no images ({", ".join(IMAGE_EXTENSIONS)})')
  first = splits[0]
  for split in splits[1:]:
    if classes[split] != classes[first]:
      raise InputError(
          f'the class folders of {data_dir}/{first} and {data_dir}/{split} differ: '
          f'only in {first}: {sorted(set(classes[first]) - set(classes[split]))}, '
          f'only in {split}: {sorted(set(classes[split]) - set(classes[first]))}')
  return classes[first]


def image_folder_dataset(data_dir: str | None) -> Dataset:
  """Both splits of `data_dir/{train,val|test}/<class>/*`, decoded as the
  reference pipeline decodes them (PIL, then RGB): TensorFlow's default JPEG
  decoder (fast integer DCT) differs from PIL's by about one gray level a pixel."""
  from acnet_jax import streaming  # It builds on this module.

  train, test = streaming.image_folder_sources(data_dir)
  return Dataset(decode_split(train), decode_split(test), train.num_classes)


def decode_split(source: streaming.ImageFolderSource) -> Split:
  """Every image of the source as one uint8 array; they must share one size."""
  from acnet_jax import streaming

  logging.info('Decoding %d images of %s/%s into memory.', len(source), source.root, source.split)
  decode = lambda i: streaming.decode_image(source[i][0], source.name(i))
  # PIL releases the GIL while it decodes: threads use every core.
  with concurrent.futures.ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:
    images = list(pool.map(decode, range(len(source))))
  shapes = collections.Counter(image.shape for image in images)
  if len(shapes) > 1:
    (height, width, _), _ = shapes.most_common(1)[0]
    odd = [source.name(i) for i, image in enumerate(images) if image.shape[:2] != (height, width)]
    raise InputError(
        f'the in-memory pipeline needs images of one size (most in {source.root}/{source.split} '
        f'are {width}x{height}); {len(odd)} differ, e.g. {", ".join(odd[:3])}. Stream them '
        'instead, cropped to one size: --config.pipeline=stream --config.image_size=N')
  return Split(np.stack(images), source.labels.copy())


@functools.lru_cache(maxsize=2)
def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The training order of one epoch: a pure function of (seed, epoch).

  Cached (read-only): every step of an epoch slices it, and for ImageNet's
  1.28 M images drawing it takes tens of milliseconds."""
  order = np.random.default_rng([seed, epoch]).permutation(num_examples).astype(np.int32)
  order.setflags(write=False)
  return order


def train_batch_indices(seed: int, step: int, steps_per_epoch: int, batch_size: int,
                        num_examples: int) -> np.ndarray:
  """Indices of the examples of training step `step`; the last partial batch of
  each epoch is dropped."""
  epoch, position = divmod(step, steps_per_epoch)
  order = epoch_permutation(seed, epoch, num_examples)
  return order[position * batch_size:(position + 1) * batch_size]


def eval_batches(num_examples: int, batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
  """(indices, mask) per batch; the last batch is padded and masked so that
  every example counts exactly once."""
  batches = []
  for start in range(0, num_examples, batch_size):
    indices = np.arange(start, start + batch_size, dtype=np.int32)
    mask = indices < num_examples
    batches.append((np.where(mask, indices, 0).astype(np.int32), mask))
  return batches


def augment(images: jax.Array, key: jax.Array) -> jax.Array:
  """Zero-pad 4, random crop back to the original size, random horizontal flip."""
  n, h, w, _ = images.shape
  p = CROP_PADDING
  padded = jnp.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))
  crop_key, flip_key = jax.random.split(key)
  offsets = jax.random.randint(crop_key, (n, 2), 0, 2 * p + 1)
  flips = jax.random.bernoulli(flip_key, 0.5, (n,))

  def crop_and_flip(image, offset, flip):
    crop = jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, image.shape[-1]))
    return jnp.where(flip, crop[:, ::-1], crop)

  return jax.vmap(crop_and_flip)(padded, offsets, flips)

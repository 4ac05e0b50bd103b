"""Datasets as uint8 arrays, the epoch order, and on-device augmentation.

A CIFAR-sized split fits on any accelerator (50,000 x 32 x 32 x 3 bytes =
150 MB), so the whole split is loaded once and every batch is gathered and
augmented inside the jitted step: the host only sends batch indices.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from acnet_jax.errors import InputError

DATASETS = ('cifar10', 'cifar100', 'image_folder', 'synthetic')
TFDS_NUM_CLASSES = {'cifar10': 10, 'cifar100': 100}
# The original code normalises with mean = std = 0.5 per channel.
PIXEL_MEAN = 0.5
PIXEL_STD = 0.5
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


def synthetic_dataset(num_classes: int, num_examples: int, seed: int) -> Dataset:
  rng = np.random.default_rng(seed)
  def split(n: int) -> Split:
    return Split(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                 rng.integers(0, num_classes, (n,), dtype=np.int32))
  return Dataset(split(num_examples), split(max(num_examples // 4, 1)), num_classes)


def tfds_dataset(name: str, data_dir: str | None) -> Dataset:
  import tensorflow_datasets as tfds  # Slow to import; not needed for synthetic data.

  if name == 'image_folder':
    # A fixed shape: tfds would otherwise pad smaller images up to the largest.
    builder = tfds.ImageFolder(data_dir, shape=check_image_folder(data_dir))
  else:
    builder = tfds.builder(name, data_dir=data_dir or None)
    builder.download_and_prepare()
  splits = {}
  for split in ('train', 'test'):
    if split not in builder.info.splits:
      raise InputError(f'{name} at {data_dir!r} has no {split!r} split '
                       f'(it has {", ".join(builder.info.splits)})')
    logging.info('Loading %s/%s into memory.', name, split)
    try:
      images, labels = tfds.as_numpy(builder.as_dataset(
          split=split, batch_size=-1, as_supervised=True, shuffle_files=False))
    except Exception as error:  # TensorFlow's decode and shape errors name no file.
      if name != 'image_folder':
        raise
      raise InputError(f'cannot read {data_dir}/{split} as one array of images: '
                       f'{describe_bad_images(os.path.join(data_dir, split))}') from error
    splits[split] = Split(np.asarray(images, np.uint8), np.asarray(labels, np.int32))
  return Dataset(splits['train'], splits['test'], builder.info.features['label'].num_classes)


IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')


def check_image_folder(data_dir: str | None) -> tuple[int, int, int]:
  """Stops with a clear message on a missing, empty or inconsistent image folder;
  returns the (height, width, channels) of its first image, which all must share."""
  layout = 'a folder holding train/<class>/*.jpg and test/<class>/*.jpg'
  if not data_dir or not os.path.isdir(data_dir):
    raise InputError(f"dataset 'image_folder' needs data_dir= {layout}; got {data_dir!r}, "
                     'which is not a folder')
  classes = {}
  for split in ('train', 'test'):
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
  if classes['train'] != classes['test']:
    raise InputError(f'the class folders of {data_dir}/train and {data_dir}/test differ: '
                     f'only in train: {sorted(set(classes["train"]) - set(classes["test"]))}, '
                     f'only in test: {sorted(set(classes["test"]) - set(classes["train"]))}')
  return image_shape(os.path.join(data_dir, 'train'))


def image_shapes(split_dir: str) -> Iterator[tuple[str, tuple[int, int, int] | None]]:
  """(path, (height, width, channels)) of every image file; None if unreadable."""
  from PIL import Image  # Reads headers only, until load().

  for label in sorted(os.listdir(split_dir)):
    for name in sorted(os.listdir(os.path.join(split_dir, label))):
      if name.lower().endswith(IMAGE_EXTENSIONS):
        path = os.path.join(split_dir, label, name)
        try:
          with Image.open(path) as image:
            image.load()
            yield path, (image.height, image.width, len(image.getbands()))
        except Exception:
          yield path, None


def image_shape(split_dir: str) -> tuple[int, int, int]:
  for path, shape in image_shapes(split_dir):
    if shape is None:
      raise InputError(f'{path} is not a readable image; remove or replace it')
    return shape
  raise InputError(f'{split_dir} holds no images')


def describe_bad_images(split_dir: str) -> str:
  """Names the files that are not decodable images or not of the common size."""
  shapes: dict[tuple[int, int, int] | None, list[str]] = {}
  for path, shape in image_shapes(split_dir):
    shapes.setdefault(shape, []).append(path)
  broken = shapes.pop(None, [])
  if broken:
    return f'{len(broken)} file(s) are not readable images, e.g. {", ".join(broken[:3])}; ' \
        'remove or replace them'
  if len(shapes) > 1:
    common = max(shapes, key=lambda s: len(shapes[s]))
    odd = [p for s, paths in shapes.items() if s != common for p in paths]
    return (f'images must all have one size (most are {common[1]}x{common[0]}x{common[2]}); '
            f'{len(odd)} differ, e.g. {", ".join(odd[:3])}')
  return 'TensorFlow could not decode them (see the error above)'


def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The training order of one epoch: a pure function of (seed, epoch)."""
  return np.random.default_rng([seed, epoch]).permutation(num_examples).astype(np.int32)


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


def normalize(images: jax.Array) -> jax.Array:
  return (images.astype(jnp.float32) / 255.0 - PIXEL_MEAN) / PIXEL_STD


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

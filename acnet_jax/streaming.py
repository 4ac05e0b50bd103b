"""Images streamed from storage, for data sets that do not fit in memory (ImageNet).

A random-access source yields (encoded image, label); the host decodes it with
PIL and augments it exactly as torchvision's ImageNet recipe does
(RandomResizedCrop + RandomHorizontalFlip to train, Resize + CenterCrop to
evaluate), and batches stay uint8: the device normalises them. Which examples
a step trains on (`input_pipeline.train_batch_indices`) and how each is
augmented are pure functions of (seed, step, position in the global batch), so
a run restarted at step k sees exactly the batches it would have seen: the
stream keeps no state that a checkpoint would need.

grain makes batches in threads: PIL releases the GIL while it decodes,
converts, crops and resizes (a Python thread runs at full speed meanwhile), so
threads use several cores without copying batches between processes; grain's
multiprocessing prefetch measured 35% slower with 2 workers on 2 cores.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import grain
import numpy as np
from absl import logging
from PIL import Image

from acnet_jax.errors import InputError
from acnet_jax.input_pipeline import IMAGE_EXTENSIONS, check_class_folders, train_batch_indices

# The evaluation split of an image folder: `val/`, else `test/`. val wins when
# both exist: ImageNet-style folders keep their labelled held-out data in val/
# (ImageNet's own test images have no labels).
EVAL_SPLITS = ('val', 'test')
# torchvision's RandomResizedCrop defaults.
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
# Batches decoded ahead of the consumer, per process.
PREFETCH_BATCHES = 2
# What prepares a tfds data set for `tfds_source`. ImageNet, once, with
# ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar downloaded into MANUAL:
#   tfds build imagenet2012 --data_dir=DATA --manual_dir=MANUAL --file_format=array_record
# The tfds 4.9.10 CLI imports apache_beam and mlcroissant at start-up (pip
# install apache-beam mlcroissant), or the same from Python:
#   tfds.builder('imagenet2012', data_dir=DATA, file_format='array_record').download_and_prepare(
#       download_config=tfds.download.DownloadConfig(manual_dir=MANUAL))
TFDS_BUILD_COMMAND = 'tfds build {name} --data_dir={data_dir} --file_format=array_record'


class Source(Protocol):
  """Random access to (encoded image, label); `name` says which file or record
  an error is about."""
  num_classes: int

  def __len__(self) -> int: ...

  def __getitem__(self, index: int) -> tuple[bytes, int]: ...

  def name(self, index: int) -> str: ...


# ------------------------------------------------------------------ sources

class ImageFolderSource:
  """The images of `root/<split>/<class>/*` (jpg, jpeg, png, any case); labels
  follow the sorted class names, as in torchvision's ImageFolder."""

  def __init__(self, root: str, split: str):
    self.root = root
    self.split = split
    self.classes = check_class_folders(root, (split,))
    files, labels = [], []
    for label, name in enumerate(self.classes):
      for file in sorted(os.listdir(os.path.join(root, split, name))):
        if file.lower().endswith(IMAGE_EXTENSIONS):
          files.append(os.fsencode(os.path.join(name, file)))
          labels.append(label)
    # Bytes in one array: ImageNet's 1.28M paths as Python strings take ~150 MB.
    self.files = np.array(files)
    self.labels = np.array(labels, np.int32)
    self.num_classes = len(self.classes)

  def __len__(self) -> int:
    return len(self.labels)

  def name(self, index: int) -> str:
    return os.path.join(self.root, self.split, os.fsdecode(self.files[index]))

  def __getitem__(self, index: int) -> tuple[bytes, int]:
    path = self.name(index)
    try:
      with open(path, 'rb') as f:
        return f.read(), int(self.labels[index])
    except OSError as error:
      raise InputError(f'cannot read {path} ({error.strerror}); check that the file '
                       'exists and is readable') from error


def image_folder_sources(root: str) -> tuple[ImageFolderSource, ImageFolderSource]:
  """The train and evaluation splits of `root`, checked to hold the same classes."""
  eval_split = next((s for s in EVAL_SPLITS if root and os.path.isdir(os.path.join(root, s))),
                    EVAL_SPLITS[0])
  check_class_folders(root, ('train', eval_split))
  logging.info('Image folder: training on %s/train, evaluating on %s/%s.', root, root, eval_split)
  return ImageFolderSource(root, 'train'), ImageFolderSource(root, eval_split)


class TfdsSource:
  """The records of a tfds data set prepared as array_record, images still
  encoded, so that PIL decodes them as it decodes an image folder's files:
  tfds's own decoding uses OpenCV where it is installed."""

  def __init__(self, records: Sequence[dict[str, Any]], description: str, num_classes: int):
    self.records = records
    self.description = description
    self.num_classes = num_classes

  def __len__(self) -> int:
    return len(self.records)

  def name(self, index: int) -> str:
    return f'record {index} of {self.description}'

  def __getitem__(self, index: int) -> tuple[bytes, int]:
    record = self.records[index]
    return record['image'], int(record['label'])


def tfds_source(name: str, data_dir: str | None, split: str) -> TfdsSource:
  """A split of a tfds data set that `tfds build ... --file_format=array_record`
  prepared (ImageNet: `imagenet2012`, splits `train` and `validation`)."""
  import tensorflow_datasets as tfds  # Slow to import; image folders do not need it.

  try:
    records = tfds.data_source(name, split=split, data_dir=data_dir, download=False,
                               decoders={'image': tfds.decode.SkipDecoding()})
  except NotImplementedError as error:  # tfds's way to say: no array_record files.
    command = TFDS_BUILD_COMMAND.format(name=name, data_dir=data_dir or '~/tensorflow_datasets')
    raise InputError(f'{name} in {data_dir} is not prepared in the array_record format that '
                     f'streaming reads at random; prepare it once with `{command}`, adding '
                     '--manual_dir=FOLDER for data downloaded by hand (imagenet2012: FOLDER '
                     'holds ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar). tfds said: '
                     f'{" ".join(str(error).split())}') from error
  return TfdsSource(records, f'{name}/{split} in {data_dir}',
                    records.dataset_info.features['label'].num_classes)


# ------------------------------------------------------ decoding, augmenting

def decode(data: bytes, name: str) -> Image.Image:
  """The RGB PIL image, decoded as torchvision's ImageFolder decodes: PIL, then
  RGB, so grayscale, CMYK, palette and RGBA images all become RGB. The
  augmentations take and return PIL images, as torchvision's do: array round
  trips between them would cost ~25% of the host time per image."""
  try:
    with Image.open(io.BytesIO(data)) as image:
      return image.convert('RGB')
  except Exception as error:  # PIL raises OSError, ValueError, SyntaxError and its own.
    raise InputError(f'{name} is not a readable image ({error}); remove or replace it') from error


def decode_image(data: bytes, name: str) -> np.ndarray:
  """(height, width, 3) uint8: `decode` as an array."""
  return np.asarray(decode(data, name))


def random_resized_crop_box(height: int, width: int, rng: np.random.Generator,
                            scale: tuple[float, float] = CROP_SCALE,
                            ratio: tuple[float, float] = CROP_RATIO) -> tuple[int, int, int, int]:
  """(top, left, height, width) by torchvision's RandomResizedCrop.get_params:
  10 tries of a uniform area fraction and a log-uniform aspect ratio, then the
  centre crop of the aspect ratio clamped to `ratio`."""
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target_area = area * rng.uniform(scale[0], scale[1])
    aspect_ratio = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
    w = int(round(math.sqrt(target_area * aspect_ratio)))
    h = int(round(math.sqrt(target_area / aspect_ratio)))
    if 0 < w <= width and 0 < h <= height:
      return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
  in_ratio = width / height
  if in_ratio < min(ratio):
    w, h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    h, w = height, int(round(height * max(ratio)))
  else:
    h, w = height, width
  return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(image: Image.Image, box: tuple[int, int, int, int], size: int) -> Image.Image:
  """torchvision's resized_crop: crop (top, left, height, width), then a PIL
  bilinear resize to size x size (PIL's resize(box=) would differ at the edges)."""
  top, left, height, width = box
  crop = image.crop((left, top, left + width, top + height))
  return crop.resize((size, size), Image.BILINEAR)


def random_resized_crop(image: Image.Image, rng: np.random.Generator, size: int,
                        scale: tuple[float, float] = CROP_SCALE,
                        ratio: tuple[float, float] = CROP_RATIO) -> Image.Image:
  """torchvision's RandomResizedCrop(size, scale, ratio)."""
  box = random_resized_crop_box(image.height, image.width, rng, scale, ratio)
  return resized_crop(image, box, size)


def random_flip(image: Image.Image, rng: np.random.Generator) -> Image.Image:
  """torchvision's RandomHorizontalFlip(p=0.5)."""
  return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else image


def resize_shorter_then_center_crop(image: Image.Image, size: int,
                                    resize_size: int | None = None) -> Image.Image:
  """torchvision's Resize(resize_size) + CenterCrop(size); resize_size defaults
  to round(size * 256 / 224), the ImageNet ratio."""
  resize_size = resize_size or round(size * 256 / 224)
  if resize_size < size:
    raise InputError(f'the evaluation resize ({resize_size}) must be at least the image size '
                     f'({size})')
  h, w = image.height, image.width
  # Resize(int) sets the shorter side and truncates the longer one.
  if w <= h:
    new_h, new_w = int(resize_size * h / w), resize_size
  else:
    new_h, new_w = resize_size, int(resize_size * w / h)
  if (new_h, new_w) != (h, w):
    image = image.resize((new_w, new_h), Image.BILINEAR)
  top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
  return image.crop((left, top, left + size, top + size))


# ------------------------------------------------------------------ batches

@dataclasses.dataclass(frozen=True)
class TrainBatch:
  """Batch i of one process's stream: positions [start, stop) of the global
  batch of step start_step + i."""
  source: Source
  seed: int
  steps_per_epoch: int
  global_batch_size: int
  start: int
  stop: int
  start_step: int
  image_size: int

  def __call__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
    step = self.start_step + i
    indices = train_batch_indices(self.seed, step, self.steps_per_epoch, self.global_batch_size,
                                  len(self.source))
    images = np.empty((self.stop - self.start, self.image_size, self.image_size, 3), np.uint8)
    labels = np.empty(self.stop - self.start, np.int32)
    for k, position in enumerate(range(self.start, self.stop)):
      index = int(indices[position])
      data, labels[k] = self.source[index]
      rng = np.random.default_rng([self.seed, step, position])
      image = random_resized_crop(decode(data, self.source.name(index)), rng, self.image_size)
      images[k] = np.asarray(random_flip(image, rng))
    return images, labels


@dataclasses.dataclass(frozen=True)
class EvalBatch:
  """Batch i of one process's evaluation stream: examples i * global_batch_size
  + [start, stop); those past the end are zero images with mask False."""
  source: Source
  global_batch_size: int
  start: int
  stop: int
  image_size: int

  def __call__(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    indices = np.arange(self.start, self.stop) + i * self.global_batch_size
    mask = indices < len(self.source)
    images = np.zeros((len(indices), self.image_size, self.image_size, 3), np.uint8)
    labels = np.zeros(len(indices), np.int32)
    for k in np.flatnonzero(mask):
      data, labels[k] = self.source[int(indices[k])]
      image = decode(data, self.source.name(int(indices[k])))
      images[k] = np.asarray(resize_shorter_then_center_crop(image, self.image_size))
    return images, labels, mask


def process_share(global_batch_size: int, process_index: int,
                  process_count: int) -> tuple[int, int]:
  """[start, stop) of this process's contiguous share of a global batch."""
  if global_batch_size % process_count or not 0 <= process_index < process_count:
    raise InputError(f'a global batch of {global_batch_size} cannot be split evenly over '
                     f'{process_count} processes (process {process_index})')
  local = global_batch_size // process_count
  return process_index * local, (process_index + 1) * local


def prefetched(make_batch: TrainBatch | EvalBatch, num_batches: int,
               num_workers: int) -> Iterator[Any]:
  """make_batch(0), make_batch(1), ... in order; `num_workers` threads make one
  batch each, at most max(num_workers, PREFETCH_BATCHES) batches ahead of the
  consumer (0 workers: in the calling thread). A batch per thread rather than
  an example per thread: 7-10% more images per CPU second, measured on 2 cores."""
  read_options = grain.ReadOptions(num_threads=num_workers,
                                   prefetch_buffer_size=max(num_workers, PREFETCH_BATCHES))
  return iter(grain.MapDataset.range(num_batches).map(make_batch).to_iter_dataset(read_options))


def train_batches(source: Source, *, seed: int, global_batch_size: int, steps_per_epoch: int,
                  image_size: int, start_step: int, num_steps: int, process_index: int,
                  process_count: int,
                  num_workers: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """(images uint8 [local, S, S, 3], labels int32 [local]) of steps start_step,
  ..., start_step + num_steps - 1: this process's contiguous share of each
  global batch of `input_pipeline.train_batch_indices`."""
  start, stop = process_share(global_batch_size, process_index, process_count)
  if not 0 < steps_per_epoch * global_batch_size <= len(source):
    raise InputError(f'an epoch of {steps_per_epoch} steps of {global_batch_size} examples must '
                     f'hold at least one step and at most the {len(source)} training examples')
  make_batch = TrainBatch(source, seed, steps_per_epoch, global_batch_size, start, stop,
                          start_step, image_size)
  return prefetched(make_batch, num_steps, num_workers)


def eval_batches(source: Source, *, global_batch_size: int, image_size: int, process_index: int,
                 process_count: int,
                 num_workers: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """(images, labels, mask) of this process's share of each global batch; every
  example counts once, the last global batch is padded with mask False."""
  start, stop = process_share(global_batch_size, process_index, process_count)
  num_batches = -(-len(source) // global_batch_size)
  return prefetched(EvalBatch(source, global_batch_size, start, stop, image_size), num_batches,
                    num_workers)

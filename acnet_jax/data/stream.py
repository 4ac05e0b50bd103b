"""Images streamed from storage, for data sets that do not fit in memory (ImageNet).

A random-access source (an image folder, or a tfds data set prepared as
array_record) yields (encoded image, label); the host decodes it with PIL and
augments it exactly as torchvision's ImageNet recipe does (`transforms`), and
batches stay uint8: the device normalises them. Which examples a step trains
on (`order.train_batch_indices`) and how each is
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
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import grain
import numpy as np

from acnet_jax.data.order import process_share, train_batch_indices
from acnet_jax.data.transforms import (
  decode,
  random_flip,
  random_resized_crop,
  resize_shorter_then_center_crop,
)
from acnet_jax.errors import InputError

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
  class_names: tuple[str, ...]

  def __len__(self) -> int: ...

  def __getitem__(self, index: int) -> tuple[bytes, int]: ...

  def name(self, index: int) -> str: ...


# ------------------------------------------------------------------ tfds


class TfdsSource:
  """The records of a tfds data set prepared as array_record, images still
  encoded, so that PIL decodes them as it decodes an image folder's files:
  tfds's own decoding uses OpenCV where it is installed."""

  def __init__(
    self, records: Sequence[dict[str, Any]], description: str, class_names: tuple[str, ...]
  ):
    self.records = records
    self.description = description
    self.class_names = class_names
    self.num_classes = len(class_names)

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
    records = tfds.data_source(
      name,
      split=split,
      data_dir=data_dir,
      download=False,
      decoders={'image': tfds.decode.SkipDecoding()},
    )
  except NotImplementedError as error:  # tfds's way to say: no array_record files.
    command = TFDS_BUILD_COMMAND.format(name=name, data_dir=data_dir or '~/tensorflow_datasets')
    raise InputError(
      f'{name} in {data_dir} is not prepared in the array_record format that '
      f'streaming reads at random; prepare it once with `{command}`, adding '
      '--manual_dir=FOLDER for data downloaded by hand (imagenet2012: FOLDER '
      'holds ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar). tfds said: '
      f'{" ".join(str(error).split())}'
    ) from error
  return TfdsSource(
    records, f'{name}/{split} in {data_dir}', tuple(records.dataset_info.features['label'].names)
  )


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
    indices = train_batch_indices(
      self.seed, step, self.steps_per_epoch, self.global_batch_size, len(self.source)
    )
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


@dataclasses.dataclass(frozen=True)
class InPlace:
  """make_batch(i), with a batch that cannot be made (a file that does not
  decode) kept as its error, so that it is raised at its own position in the
  stream: grain raises a worker's error as soon as it is met, batches ahead of
  the consumer, and the steps before it would be lost."""

  make_batch: TrainBatch | EvalBatch

  def __call__(self, i: int) -> Any:
    try:
      return self.make_batch(i)
    except InputError as error:
      return error


def raised_in_place(batches: Iterator[Any]) -> Iterator[Any]:
  for batch in batches:
    if isinstance(batch, InputError):
      raise batch
    yield batch


def prefetched(
  make_batch: TrainBatch | EvalBatch, num_batches: int, num_workers: int
) -> Iterator[Any]:
  """make_batch(0), make_batch(1), ... in order; `num_workers` threads make one
  batch each, at most max(num_workers, PREFETCH_BATCHES) batches ahead of the
  consumer (0 workers: in the calling thread). A batch per thread rather than
  an example per thread: 7-10% more images per CPU second, measured on 2 cores.
  A batch that cannot be made raises its InputError when its turn comes."""
  read_options = grain.ReadOptions(
    num_threads=num_workers, prefetch_buffer_size=max(num_workers, PREFETCH_BATCHES)
  )
  dataset = grain.MapDataset.range(num_batches).map(InPlace(make_batch))
  return raised_in_place(iter(dataset.to_iter_dataset(read_options)))


def train_batches(
  source: Source,
  *,
  seed: int,
  global_batch_size: int,
  steps_per_epoch: int,
  image_size: int,
  start_step: int,
  num_steps: int,
  process_index: int,
  process_count: int,
  num_workers: int,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """(images uint8 [local, S, S, 3], labels int32 [local]) of steps start_step,
  ..., start_step + num_steps - 1: this process's contiguous share of each
  global batch of `order.train_batch_indices`."""
  start, stop = process_share(global_batch_size, process_index, process_count)
  if not 0 < steps_per_epoch * global_batch_size <= len(source):
    raise InputError(
      f'an epoch of {steps_per_epoch} steps of {global_batch_size} examples must '
      f'hold at least one step and at most the {len(source)} training examples'
    )
  make_batch = TrainBatch(
    source, seed, steps_per_epoch, global_batch_size, start, stop, start_step, image_size
  )
  return prefetched(make_batch, num_steps, num_workers)


def eval_batches(
  source: Source,
  *,
  global_batch_size: int,
  image_size: int,
  process_index: int,
  process_count: int,
  num_workers: int,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """(images, labels, mask) of this process's share of each global batch; every
  example counts once, the last global batch is padded with mask False."""
  start, stop = process_share(global_batch_size, process_index, process_count)
  num_batches = -(-len(source) // global_batch_size)
  return prefetched(
    EvalBatch(source, global_batch_size, start, stop, image_size), num_batches, num_workers
  )

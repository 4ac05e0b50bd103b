"""Numbers for the streaming input path: decoded and augmented images per second
(and per host core used), and a train step fed by the stream as training
runs it (`python -m acnet_jax.benchmark --pipeline`).
benchmarks/torchvision_pipeline.py measures torchvision the same way."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from acnet_jax.benchmarking.suite import bench_config, fresh_state
from acnet_jax.blocks.acb import ACB_IMPLS
from acnet_jax.data import stream
from acnet_jax.data.image_folder import ImageFolderSource
from acnet_jax.errors import InputError
from acnet_jax.training.trainer import DATA_AXIS, Trainer


def time_decoding(
  data_dir: str, image_size: int, batch_size: int, num_workers: int, steps: int
) -> dict[str, Any]:
  """Times `steps` training batches of the image folder at data_dir."""
  source = ImageFolderSource(data_dir, 'train')
  if batch_size > len(source):
    raise InputError(
      f'batch_size={batch_size} is larger than the {len(source)} images of {data_dir}/train'
    )
  batches = stream.train_batches(
    source,
    seed=0,
    global_batch_size=batch_size,
    steps_per_epoch=len(source) // batch_size,
    image_size=image_size,
    start_step=0,
    num_steps=steps + 1,
    process_index=0,
    process_count=1,
    num_workers=num_workers,
  )
  next(batches)
  start, start_cpu = time.perf_counter(), time.process_time()
  images = sum(len(labels) for _, labels in batches)
  seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
  return decoding_row(
    'acnet_jax.data.stream', image_size, batch_size, num_workers, images, seconds, cpu_seconds
  )


def decoding_row(
  pipeline: str,
  image_size: int,
  batch_size: int,
  num_workers: int,
  images: int,
  seconds: float,
  cpu_seconds: float,
) -> dict[str, Any]:
  """One pipeline's decoding rate: images a second, over all cores it used and per core."""
  cores = cpu_seconds / seconds
  return {
    'pipeline': pipeline,
    'image_size': image_size,
    'batch_size': batch_size,
    'num_workers': num_workers,
    'images': images,
    'images_per_s': images / seconds,
    'cores_used': cores,
    'images_per_s_per_core': images / seconds / cores,
  }


# Column -> format of its values.
COLUMNS = {
  'pipeline': '{}',
  'image_size': '{}',
  'batch_size': '{}',
  'num_workers': '{}',
  'images_per_s': '{:.0f}',
  'cores_used': '{:.2f}',
  'images_per_s_per_core': '{:.0f}',
}


def format_table(results: Sequence[dict[str, Any]]) -> str:
  rows = [tuple(COLUMNS)] + [tuple(f.format(r[c]) for c, f in COLUMNS.items()) for r in results]
  widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
  return '\n'.join('  '.join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows)


def time_streamed_training(
  model: str,
  data_dir: str,
  image_size: int,
  batch_size: int,
  num_workers: int,
  devices: Sequence[jax.Device],
  steps: int,
  warmup: int,
) -> dict[str, Any]:
  """The train step fed by the streaming pipeline as training runs it (at
  most two steps in flight): median step time and the share of the wall
  clock spent waiting for the next batch."""
  config = bench_config(model, 'normal', ACB_IMPLS[0], batch_size, batch_size, 0)
  config.update(
    dict(
      dataset='image_folder',
      data_dir=data_dir,
      pipeline='stream',
      image_size=image_size,
      data_workers=num_workers,
      num_classes=len(os.listdir(os.path.join(data_dir, 'train'))),
    )
  )
  trainer = Trainer(config, Mesh(np.array(devices), (DATA_AXIS,)))
  state = fresh_state(trainer)
  previous = None
  for i in range(warmup + 1):  # Compiles, starts the threads.
    state, previous = trainer.train_step(state, trainer.train_inputs(i))
  jax.block_until_ready(previous)
  waited, start = trainer.feed.wait_seconds, time.perf_counter()
  for i in range(warmup + 1, warmup + 1 + steps):
    state, metrics = trainer.train_step(state, trainer.train_inputs(i))
    jax.block_until_ready(previous)
    previous = metrics
  jax.block_until_ready(previous)
  seconds = time.perf_counter() - start
  return {
    'model': model,
    'image_size': image_size,
    'batch_size': batch_size,
    'num_workers': trainer.feed.workers,
    'step_s': seconds / steps,
    'images_per_s': steps * batch_size / seconds,
    'data_wait_share': (trainer.feed.wait_seconds - waited) / seconds,
  }

"""Numbers, not tests: how fast the streaming path decodes and augments.

    python -m acnet_jax.pipeline_benchmark --data_dir=FOLDER [--image_sizes=224,64
        --batch_size=64 --num_workers=1,2 --steps=20]

Times `streaming.train_batches` over FOLDER/train/<class>/* (the first batch,
which starts the threads, is not timed) and reports images/s in total and per
host core used: CPU seconds of the process (all its threads) per wall second.
benchmarks/torchvision_pipeline.py measures torchvision the same way.
Flags are parsed in `main` only, so `run` can be imported next to other flags.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from acnet_jax import streaming
from acnet_jax.errors import InputError


def run(data_dir: str, image_size: int, batch_size: int, num_workers: int,
        steps: int) -> dict[str, Any]:
  """Times `steps` training batches of the image folder at data_dir."""
  source = streaming.ImageFolderSource(data_dir, 'train')
  if batch_size > len(source):
    raise InputError(f'batch_size={batch_size} is larger than the {len(source)} images of '
                     f'{data_dir}/train')
  batches = streaming.train_batches(
      source, seed=0, global_batch_size=batch_size, steps_per_epoch=len(source) // batch_size,
      image_size=image_size, start_step=0, num_steps=steps + 1, process_index=0,
      process_count=1, num_workers=num_workers)
  next(batches)
  start, start_cpu = time.perf_counter(), time.process_time()
  images = sum(len(labels) for _, labels in batches)
  seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
  cores = cpu_seconds / seconds
  return {'pipeline': 'acnet_jax.streaming', 'image_size': image_size, 'batch_size': batch_size,
          'num_workers': num_workers, 'images': images, 'images_per_s': images / seconds,
          'cores_used': cores, 'images_per_s_per_core': images / seconds / cores}


# Column -> format of its values.
COLUMNS = {'pipeline': '{}', 'image_size': '{}', 'batch_size': '{}', 'num_workers': '{}',
           'images_per_s': '{:.0f}', 'cores_used': '{:.2f}', 'images_per_s_per_core': '{:.0f}'}


def format_table(results: Sequence[dict[str, Any]]) -> str:
  rows = [tuple(COLUMNS)] + [tuple(f.format(r[c]) for c, f in COLUMNS.items()) for r in results]
  widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
  return '\n'.join('  '.join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows)


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data_dir', required=True, help='A folder holding train/<class>/*.jpg.')
  parser.add_argument('--image_sizes', default='224,64', help='Comma-separated crop sizes.')
  parser.add_argument('--batch_size', type=int, default=64)
  parser.add_argument('--num_workers', default='1,2', help='Comma-separated thread counts.')
  parser.add_argument('--steps', type=int, default=20, help='Timed batches per measurement.')
  args = parser.parse_args(argv)
  try:
    results = [run(args.data_dir, int(size), args.batch_size, int(workers), args.steps)
               for size in args.image_sizes.split(',') for workers in args.num_workers.split(',')]
  except InputError as error:
    parser.error(str(error))
  print(format_table(results))


if __name__ == '__main__':
  main()

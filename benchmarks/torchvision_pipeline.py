"""The reference for `acnet_jax.benchmark --pipeline`: torchvision's ImageNet
training input on the same folder, the same batch size and the same number of
workers.

Needs the torch extra (pip install -e '.[torch]'); from the repository root,
with the decoding command's flags:

    python -m benchmarks.torchvision_pipeline --data_dir=FOLDER \\
        [--crop_sizes=224,64 --batch_size=64 --num_workers=1,2 --decode_batches=20]

datasets.ImageFolder(FOLDER/train) with RandomResizedCrop(size) +
RandomHorizontalFlip + PILToTensor, through a DataLoader with num_workers worker
processes. As in `acnet_jax.benchmark --pipeline`, the first batch (which starts
the workers) is not timed, and "cores used" is the CPU seconds of the main
process and its workers per wall second. Its rows go to
results/benchmarks/torchvision_decoding.jsonl (`acnet_jax.benchmarking.results`).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from acnet_jax.benchmarking import results
from acnet_jax.benchmarking.pipeline import decoding_row, format_table

CLOCK_TICKS = os.sysconf('SC_CLK_TCK')


def cpu_seconds(pids: Iterable[int]) -> float:
  """User + system CPU seconds of the processes (all their threads), from /proc."""
  total = 0
  for pid in pids:
    with open(f'/proc/{pid}/stat') as f:
      fields = f.read().rsplit(')', 1)[1].split()  # after "pid (name)"
    total += int(fields[11]) + int(fields[12])  # utime, stime
  return total / CLOCK_TICKS


def run(
  data_dir: str, image_size: int, batch_size: int, num_workers: int, steps: int
) -> dict[str, Any]:
  import torch
  import torchvision
  from torchvision import datasets, transforms

  dataset = datasets.ImageFolder(
    os.path.join(data_dir, 'train'),
    transforms.Compose(
      [
        transforms.RandomResizedCrop(image_size),
        transforms.RandomHorizontalFlip(),
        transforms.PILToTensor(),
      ]
    ),
  )
  sampler = torch.utils.data.RandomSampler(dataset, num_samples=(steps + 1) * batch_size)
  loader = torch.utils.data.DataLoader(
    dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=True
  )
  batches = iter(loader)
  next(batches)
  pids = [os.getpid()] + [w.pid for w in getattr(batches, '_workers', [])]
  start, start_cpu = time.perf_counter(), cpu_seconds(pids)
  # next(), not a for loop: the loader ends its workers on StopIteration, and
  # their CPU time is read after the last batch.
  images = sum(len(next(batches)[1]) for _ in range(steps))
  seconds, cpu = time.perf_counter() - start, cpu_seconds(pids) - start_cpu
  return decoding_row(
    f'torchvision {torchvision.__version__}',
    image_size,
    batch_size,
    num_workers,
    images,
    seconds,
    cpu,
  )


def markdown(ours: Sequence[Mapping[str, Any]], theirs: Sequence[Mapping[str, Any]]) -> str:
  """The docs' table: each crop size and worker count of our decoding rows
  beside torchvision's of the same settings."""
  by_setting = {(row['image_size'], row['num_workers']): row for row in theirs}
  cells = lambda row: [
    f'{row["images_per_s"]:.0f}',
    f'{row["cores_used"]:.2f}',
    f'{row["images_per_s_per_core"]:.0f}',
  ]
  lines = [
    [str(row['image_size']), str(row['num_workers']), *cells(row), *cells(other)]
    for row in ours
    if (other := by_setting.get((row['image_size'], row['num_workers'])))
  ]
  header = ['crop', 'workers', 'this project: images/s', 'cores used', 'per core']
  return results.markdown_table([*header, 'torchvision: images/s', 'cores used', 'per core'], lines)


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data_dir', required=True, help='A folder holding train/<class>/*.jpg.')
  parser.add_argument('--crop_sizes', default='224,64', help='Comma-separated crop sizes.')
  parser.add_argument('--batch_size', type=int, default=64)
  parser.add_argument('--num_workers', default='1,2', help='Comma-separated worker counts.')
  parser.add_argument(
    '--decode_batches', type=int, default=20, help='Timed batches per measurement.'
  )
  parser.add_argument('--results_dir', default=results.RESULTS_DIR, help=results.RESULTS_DIR_HELP)
  args = parser.parse_args(argv)
  context = results.run_context(
    results.command_line('benchmarks.torchvision_pipeline', argv),
    'cpu',
    ('torch', 'torchvision', 'pillow'),
  )
  rows = [
    {
      'measure': 'decoding',
      **run(args.data_dir, int(size), args.batch_size, int(workers), args.decode_batches),
    }
    for size in args.crop_sizes.split(',')
    for workers in args.num_workers.split(',')
  ]
  print(format_table(rows))
  path = results.append_rows('torchvision_decoding', rows, args.results_dir, context)
  if path:
    print(f'appended its rows to {path}')


if __name__ == '__main__':
  main()

"""Numbers, not tests: how fast the streaming path decodes and augments.

    python -m acnet_jax.pipeline_benchmark --data_dir=FOLDER [--image_sizes=224,64
        --batch_size=64 --num_workers=1,2 --steps=20]

Times `data.stream.train_batches` over FOLDER/train/<class>/* (the first batch,
which starts the threads, is not timed) and reports images/s in total and per
host core used: CPU seconds of the process (all its threads) per wall second.
benchmarks/torchvision_pipeline.py measures torchvision the same way.
Flags are parsed in `main` only, so `run` can be imported next to other flags.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from acnet_jax import xla_cpu
from acnet_jax.benchmarking.pipeline import format_table, time_decoding
from acnet_jax.errors import InputError


def main(argv: Sequence[str] | None = None) -> None:
  xla_cpu.use_project_flags()
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data_dir', required=True, help='A folder holding train/<class>/*.jpg.')
  parser.add_argument('--image_sizes', default='224,64', help='Comma-separated crop sizes.')
  parser.add_argument('--batch_size', type=int, default=64)
  parser.add_argument('--num_workers', default='1,2', help='Comma-separated thread counts.')
  parser.add_argument('--steps', type=int, default=20, help='Timed batches per measurement.')
  args = parser.parse_args(argv)
  try:
    results = [
      time_decoding(args.data_dir, int(size), args.batch_size, int(workers), args.steps)
      for size in args.image_sizes.split(',')
      for workers in args.num_workers.split(',')
    ]
  except InputError as error:
    parser.error(str(error))
  print(format_table(results))


if __name__ == '__main__':
  main()

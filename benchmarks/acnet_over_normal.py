"""acnet's train step over normal's, with their steps interleaved, for acnet_jax and PyTorch.

`benchmarks.pytorch_peer` times each model and conv in a process of its own,
one after another; this machine drifts by 20% and more between such runs, and
the ratio of two of them drifts with it (ResNet-56's acnet/normal read 2.01,
1.93 and 1.76 in three rounds of one sitting). Here one process per side
builds both convs' train steps and alternates them step by step (normal,
acnet, acnet, normal, ...: `acnet_jax.benchmarking.timing.interleaved_times`),
so drift slows both alike and cancels in the ratio.

    python -m benchmarks.acnet_over_normal [--models=rc56,cfqkbnc --pairs=30 --warmup=3]

prints, for each model and side, each conv's median step and the ratio of the
medians, with the quartiles of the pairs' own ratios, and appends them to
results/benchmarks/acnet_over_normal.jsonl (`acnet_jax.benchmarking.results`).
The JAX side is the update on a batch already on device (as
`acnet_jax.benchmark` and the peer time it); the PyTorch side is the peer's
train step (the authors' modules, a batch in memory), with as many threads as
cores (`benchmarks.peer_steps`). Needs the `torch` extra. Time only on
idle cores.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from acnet_jax.benchmarking import results
from acnet_jax.benchmarking.timing import interleaved_times
from benchmarks import peer_steps

CONVS = ('normal', 'acnet')


def summarize(times: Mapping[str, list[float]]) -> dict[str, Any]:
  """Each conv's median step, the ratio of the medians (acnet over normal), and
  the quartiles of the per-turn ratios."""
  per_turn = sorted(a / n for a, n in zip(times['acnet'], times['normal']))
  quartiles = statistics.quantiles(per_turn, n=4) if len(per_turn) > 1 else per_turn * 3
  medians = {conv: statistics.median(times[conv]) for conv in CONVS}
  return {
    'median_s': medians,
    'ratio': medians['acnet'] / medians['normal'],
    'turn_ratio_quartiles': [quartiles[0], quartiles[1], quartiles[2]],
    'pairs': len(per_turn),
  }


def jax_runs(model: str, batch_size: int) -> dict[str, Callable[[], Any]]:
  from acnet_jax import xla_cpu

  xla_cpu.use_project_flags()
  return {conv: peer_steps.jax_train_step(model, conv, batch_size) for conv in CONVS}


def torch_runs(model: str, threads: int) -> dict[str, Callable[[], Any]]:
  return {conv: peer_steps.torch_train_step(model, conv, threads)[1] for conv in CONVS}


def side(name: str, model: str, pairs: int, warmup: int, threads: int) -> dict[str, Any]:
  batch_size = peer_steps.BATCH_SIZES[model]
  runs = jax_runs(model, batch_size) if name == 'jax' else torch_runs(model, threads)
  return summarize(interleaved_times(runs, pairs, warmup))


def format_side(label: str, result: Mapping[str, Any]) -> str:
  low, mid, high = result['turn_ratio_quartiles']
  medians = result['median_s']
  return (
    f'{label:10} normal {medians["normal"] * 1e3:8.1f} ms   acnet '
    f'{medians["acnet"] * 1e3:8.1f} ms   acnet/normal {result["ratio"]:.2f}   '
    f'per pair {mid:.2f} ({low:.2f} - {high:.2f}, quartiles of {result["pairs"]})'
  )


# Each side: its process's --side, the label it is printed with, its key in the rows.
SIDES = (('jax', 'acnet_jax', 'acnet_jax'), ('torch', 'PyTorch', 'pytorch'))


def both_sides(model: str, pairs: int, warmup: int, threads: int) -> list[dict[str, Any]]:
  """Each side in a process of its own, JAX then PyTorch; prints a line per
  side and returns a row per side."""
  rows = []
  for name, label, key in SIDES:
    completed = subprocess.run(
      [
        sys.executable,
        '-m',
        'benchmarks.acnet_over_normal',
        f'--side={name}',
        f'--models={model}',
        f'--pairs={pairs}',
        f'--warmup={warmup}',
        f'--threads={threads}',
      ],
      check=True,
      capture_output=True,
      text=True,
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    print(f'{model} train step, interleaved  ' + format_side(label, result), flush=True)
    rows.append(
      {
        'model': model,
        'side': key,
        'batch_size': peer_steps.BATCH_SIZES[model],
        'pairs': result['pairs'],
        'normal_s': result['median_s']['normal'],
        'acnet_s': result['median_s']['acnet'],
        'ratio': result['ratio'],
        'pair_ratio_quartiles': result['turn_ratio_quartiles'],
      }
    )
  return rows


def markdown(rows: list[dict[str, Any]]) -> str:
  """The docs' table of `both_sides`' rows (a model measured again is `<model>, again`)."""
  lines, measured = [], collections.Counter()
  for row in rows:
    first = row['side'] == 'acnet_jax'
    measured[row['model']] += first
    model = row['model'] if measured[row['model']] == 1 else f'{row["model"]}, again'
    low, mid, high = row['pair_ratio_quartiles']
    lines.append(
      [
        model if first else '',
        'ours' if first else 'PyTorch',
        f'{row["normal_s"] * 1e3:.1f} ms',
        f'{row["acnet_s"] * 1e3:.1f} ms',
        f'{row["ratio"]:.2f}',
        f'{mid:.2f} ({low:.2f} - {high:.2f})',
      ]
    )
  header = ['model', 'side', 'normal', 'acnet', 'acnet / normal', 'per pair (quartiles)']
  return results.markdown_table(header, lines)


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--models', default='rc56,cfqkbnc', help='Of: cfqkbnc, rc56.')
  parser.add_argument('--pairs', type=int, default=30)
  parser.add_argument('--warmup', type=int, default=3)
  parser.add_argument('--threads', type=int, default=len(os.sched_getaffinity(0)))
  parser.add_argument(
    '--side',
    choices=['both', 'jax', 'torch'],
    default='both',
    help='jax or torch: that side only, as JSON (what `both` runs, each in a process of its own).',
  )
  parser.add_argument('--results_dir', default=results.RESULTS_DIR, help=results.RESULTS_DIR_HELP)
  args = parser.parse_args(argv)
  models = args.models.split(',')
  unknown = set(models) - set(peer_steps.BATCH_SIZES)
  if unknown:
    parser.error(f'unknown models {sorted(unknown)}; of: {", ".join(peer_steps.BATCH_SIZES)}')
  if args.side != 'both':
    print(json.dumps(side(args.side, models[0], args.pairs, args.warmup, args.threads)))
    return
  context = results.run_context(
    results.command_line('benchmarks.acnet_over_normal', argv),
    f'cpu, {args.threads} threads',
    (*results.JAX_PACKAGES, 'torch'),
  )
  rows = [
    row for model in models for row in both_sides(model, args.pairs, args.warmup, args.threads)
  ]
  path = results.append_rows('acnet_over_normal', rows, args.results_dir, context)
  if path:
    print(f'appended its rows to {path}')


if __name__ == '__main__':
  main()

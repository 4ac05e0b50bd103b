"""acnet_jax beside PyTorch eager on the same models, one after the other.

For each model and conv kind: the train step (a batch already in memory,
SGD with momentum 0.9 and weight decay, as training runs it), the eval
forward pass of the trained form, and that of the deploy form (ACNet's fused
convs); the PyTorch side is the authors' module structure (ACB = three
conv+BN branches summed), from authors_torch. Each side runs in
a process of its own, JAX then PyTorch, adjacent, with the same number of
threads; the ratio is PyTorch's time over ours (above 1: we are faster).

This machine's timings drift by 20% and more between adjacent runs, so
`--rounds=N` measures every model and conv N times, round after round, and
reports each side's median over the rounds, the ratio of those medians and
the ratios' range over the rounds. Its rows go to
results/benchmarks/pytorch_peer.jsonl (`acnet_jax.benchmarking.results`). The
acnet/normal ratio of each side without the drift between processes:
`benchmarks.acnet_over_normal`.

Needs acnet_jax and torch in one environment (the `torch` extra):

    pip install -e '.[torch]'
    python -m benchmarks.pytorch_peer [--models=cfqkbnc,rc56 --convs=normal,acnet --steps=10
                                       --rounds=3]

Time only on idle cores: PyTorch's threads slow 4-8x when anything else runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from acnet_jax.benchmarking import results
from acnet_jax.benchmarking.timing import median_time
from benchmarks.peer_steps import BATCH_SIZES, IMAGE_SHAPE, NUM_CLASSES, torch_train_step

EVAL_BATCH = 500


def torch_side(model: str, conv: str, steps: int, warmup: int, threads: int) -> dict[str, float]:
  import torch

  from authors_torch import acnet_models

  net, train_step = torch_train_step(model, conv, threads)
  result = {'train_step_s': median_time(train_step, steps, warmup)}
  images = torch.randn(EVAL_BATCH, IMAGE_SHAPE[2], *IMAGE_SHAPE[:2])
  forms = {'eval_s': net}
  if conv == 'acnet':
    forms['deploy_eval_s'] = acnet_models.build(model, 'acnet_deploy', NUM_CLASSES)
  for key, form in forms.items():
    form.eval()
    with torch.no_grad():
      result[key] = median_time(lambda: form(images).sum().item(), steps, warmup)
  return result


def jax_side(model: str, conv: str, steps: int, warmup: int) -> dict[str, float]:
  """acnet_jax's benchmark: the update on a batch already on device, the eval
  of the trained form and of the fused deploy model."""
  with tempfile.TemporaryDirectory() as folder:
    output = os.path.join(folder, 'bench.json')
    subprocess.run(
      [
        sys.executable,
        '-m',
        'acnet_jax.benchmark',
        f'--model={model}',
        f'--convs={conv}',
        '--acb_impls=branches',
        f'--batch_size={BATCH_SIZES[model]}',
        f'--eval_batch_size={EVAL_BATCH}',
        f'--steps={steps}',
        f'--warmup={warmup}',
        '--matmul_size=256',
        f'--output={output}',
        '--results_dir=',
      ],
      check=True,
      capture_output=True,
      text=True,
    )
    with open(output) as f:
      report = json.load(f)
  train = next(r for r in report['train'] if r['feed'] == 'on_device')
  evals = {r['conv']: r for r in report['eval']}
  result = {'train_step_s': train['step_s'], 'eval_s': evals[conv]['step_s']}
  if 'deploy' in evals:
    result['deploy_eval_s'] = evals['deploy']['step_s']
  return result


def measure(model: str, conv: str, steps: int, warmup: int, threads: int) -> dict[str, Any]:
  """Both sides, adjacent: JAX in a process, then PyTorch in another."""
  ours = jax_side(model, conv, steps, warmup)
  completed = subprocess.run(
    [
      sys.executable,
      '-m',
      'benchmarks.pytorch_peer',
      '--side=torch',
      f'--models={model}',
      f'--convs={conv}',
      f'--steps={steps}',
      f'--warmup={warmup}',
      f'--threads={threads}',
    ],
    check=True,
    capture_output=True,
    text=True,
  )
  theirs = json.loads(completed.stdout.strip().splitlines()[-1])
  return {
    'model': model,
    'conv': conv,
    'batch_size': BATCH_SIZES[model],
    'acnet_jax': ours,
    'pytorch': theirs,
    'ratio': {key: theirs[key] / ours[key] for key in ours if key in theirs},
  }


def summarize(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
  """One row per model and conv of the rounds (each a list of `measure`'s
  rows, in the same order): each side's median time over the rounds, the
  ratio of the medians, and the range of the rounds' own ratios."""
  rows = []
  for measured in zip(*rounds):
    first = measured[0]
    sides = {
      side: {key: statistics.median(row[side][key] for row in measured) for key in first[side]}
      for side in ('acnet_jax', 'pytorch')
    }
    rows.append(
      {
        'model': first['model'],
        'conv': first['conv'],
        'batch_size': first['batch_size'],
        **sides,
        'ratio': {key: sides['pytorch'][key] / sides['acnet_jax'][key] for key in first['ratio']},
        'ratio_range': {
          key: (
            min(row['ratio'][key] for row in measured),
            max(row['ratio'][key] for row in measured),
          )
          for key in first['ratio']
        },
      }
    )
  return rows


def acnet_over_normal(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
  """model -> side -> acnet's train step time over normal's."""
  steps = {(row['model'], row['conv']): row for row in rows}
  return {
    model: {
      side: steps[model, 'acnet'][side]['train_step_s']
      / steps[model, 'normal'][side]['train_step_s']
      for side in ('acnet_jax', 'pytorch')
    }
    for model, conv in steps
    if conv == 'acnet' and (model, 'normal') in steps
  }


def format_rows(rows: list[dict[str, Any]]) -> str:
  ranges = any('ratio_range' in row for row in rows)
  range_header = "rounds' ratios"
  lines = [
    f'{"model":9}{"conv":8}{"batch":>6}  {"measure":15}{"acnet_jax ms":>13}'
    f'{"PyTorch ms":>12}{"ratio":>8}' + (f'{range_header:>18}' if ranges else '')
  ]
  for row in rows:
    for key, ratio in row['ratio'].items():
      line = (
        f'{row["model"]:9}{row["conv"]:8}{row["batch_size"]:6}  '
        f'{key.removesuffix("_s"):15}{row["acnet_jax"][key] * 1e3:13.1f}'
        f'{row["pytorch"][key] * 1e3:12.1f}{ratio:8.2f}'
      )
      if ranges:
        low, high = row['ratio_range'][key]
        line += f'{low:11.2f} - {high:4.2f}'
      lines.append(line)
  for model, sides in acnet_over_normal(rows).items():
    lines.append(
      f'{model} acnet / normal train step: acnet_jax {sides["acnet_jax"]:.2f}, '
      f'PyTorch {sides["pytorch"]:.2f}'
    )
  return '\n'.join(lines)


# The measures of a row, as the docs' table names them.
MEASURES = {'train_step': 'train step', 'eval': 'eval', 'deploy_eval': 'deploy eval'}


def result_rows(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """`summarize`'s rows as data: one row per model, conv and measure."""
  return [
    {
      'model': row['model'],
      'conv': row['conv'],
      'batch_size': row['batch_size'],
      'measure': key.removesuffix('_s'),
      'acnet_jax_s': row['acnet_jax'][key],
      'pytorch_s': row['pytorch'][key],
      'ratio': ratio,
      'ratio_range': list(row['ratio_range'][key]),
    }
    for row in summary
    for key, ratio in row['ratio'].items()
  ]


def markdown(rows: list[dict[str, Any]]) -> str:
  """The docs' table of `result_rows`: each model and conv's measures, then
  each model's acnet / normal train step on each side."""
  lines, seen, train = [], set(), {}
  for row in rows:
    label = f'{row["model"]} {row["conv"]}'
    measure = MEASURES[row['measure']]
    if row['measure'] == 'eval' and row['conv'] != 'normal':
      measure = 'eval (unfused)'
    low, high = row['ratio_range']
    lines.append(
      [
        '' if label in seen else label,
        measure,
        f'{row["acnet_jax_s"] * 1e3:.1f} ms',
        f'{row["pytorch_s"] * 1e3:.1f} ms',
        f'{row["ratio"]:.2f}',
        f'{low:.2f} - {high:.2f}',
      ]
    )
    seen.add(label)
    if row['measure'] == 'train_step':
      train[row['model'], row['conv']] = row
  for (model, conv), row in train.items():
    normal = train.get((model, 'normal'))
    if conv == 'acnet' and normal:
      ours = row['acnet_jax_s'] / normal['acnet_jax_s']
      theirs = row['pytorch_s'] / normal['pytorch_s']
      lines.append(
        [f'{model} acnet / normal', 'train step', f'{ours:.2f}', f'{theirs:.2f}', '', '']
      )
  header = ['model', 'measure', 'ours', 'PyTorch', 'ratio', "rounds' ratios"]
  return results.markdown_table(header, lines)


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--models', default='cfqkbnc,rc56')
  parser.add_argument('--convs', default='normal,acnet')
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--warmup', type=int, default=3)
  parser.add_argument('--threads', type=int, default=len(os.sched_getaffinity(0)))
  parser.add_argument(
    '--rounds',
    type=int,
    default=3,
    help='Measure everything this many times, round after round; report medians over the rounds.',
  )
  parser.add_argument(
    '--side',
    choices=['both', 'torch'],
    default='both',
    help='torch: only the PyTorch side, as JSON (what `both` runs).',
  )
  parser.add_argument(
    '--output', default=os.path.join(tempfile.gettempdir(), 'acnet_jax_pytorch_peer.json')
  )
  parser.add_argument('--results_dir', default=results.RESULTS_DIR, help=results.RESULTS_DIR_HELP)
  args = parser.parse_args(argv)
  models, convs = args.models.split(','), args.convs.split(',')
  if args.side == 'torch':
    print(json.dumps(torch_side(models[0], convs[0], args.steps, args.warmup, args.threads)))
    return
  context = results.run_context(
    results.command_line('benchmarks.pytorch_peer', argv),
    f'cpu, {args.threads} threads',
    (*results.JAX_PACKAGES, 'torch'),
  )
  rounds = []
  for round_index in range(args.rounds):
    rows = []
    for model in models:
      for conv in convs:
        rows.append(measure(model, conv, args.steps, args.warmup, args.threads))
        for line in format_rows(rows[-1:]).splitlines()[1:]:
          print(f'round {round_index + 1}/{args.rounds}  {line}', flush=True)
    rounds.append(rows)
  summary = summarize(rounds)
  print()
  print(format_rows(summary if args.rounds > 1 else rounds[0]))
  with open(args.output, 'w') as f:
    json.dump({'rounds': rounds, 'summary': summary}, f, indent=1)
  print(f'\nwrote {args.output}')
  path = results.append_rows('pytorch_peer', result_rows(summary), args.results_dir, context)
  if path:
    print(f'appended its rows to {path}')


if __name__ == '__main__':
  main()

"""The docs' int8 tables (docs/deploy.md), made from the int8 reports that
`python -m acnet_jax.export --format=onnx-int8` and `python -m acnet_jax.qat`
write (`eval_int8.json`, `qat.json`), copied into results/int8/<folder>/ as
<run>.json, <run>_reduce_range.json, <run>_float_tuned[_reduce_range].json and
<run>_qat[_reduce_range].json. Each function takes the folder's reports by
file name (without .json) and returns a markdown table; benchmarks/tables.py
writes it into the page's region and checks it there.

Top-1 and drops are in points (%), each drop against the run's float model;
a report that lacks a column's number says `not measured`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from acnet_jax.benchmarking.results import markdown_table

Reports = Mapping[str, Mapping[str, Any]]

# The short Cifar-quick runs, in the table's order: (run, what it trains).
SHORT_RUNS = (
  ('normal', 'normal'),
  ('acnet', 'acnet'),
  ('dbb', 'dbb'),
  ('repvgg', 'repvgg'),
  ('repvgg_qf', 'repvgg, quantization-friendly'),
  ('acnet_online', 'acnet online'),
  ('dbb_online', 'dbb online'),
  ('repvgg_online', 'repvgg online'),
)
CIFAR_QUICK_LAYERS = ('conv1', 'conv2', 'conv3', 'fc1', 'fc2')  # Its ONNX graph's order.
RC20_KINDS = ('normal', 'acnet', 'dbb', 'repvgg', 'acnet_online', 'dbb_online', 'repvgg_online')
# The ResNet-20 fine-tunings: (kind, the reports' suffix), each a row.
RC20_FINE_TUNED = (
  ('repvgg', ''),
  ('repvgg', '_reduce_range'),
  ('repvgg', '_reduce_range_lr1e-4'),
  ('dbb', ''),
  ('dbb', '_reduce_range'),
)
# The reproduction campaign's arms as the table names them.
CAMPAIGN_ARMS = {'normal': 'normal', 'acnet': 'ACNet', 'acnet_online': 'ACNet online'}
CAMPAIGN_RUN = re.compile(r'(?P<arm>\w+?)_seed(?P<seed>\d+)(?P<reduce_range>_reduce_range)?')


def percent(value: float) -> str:
  return f'{100 * value:.2f}'


def top1_and_drop(report: Mapping[str, Any] | None, prefix: str = '') -> str:
  """`top-1 (drop)` of the report's `<prefix>int8_top1` and `<prefix>drop`."""
  if report is None or f'{prefix}int8_top1' not in report:
    return 'not measured'
  return f'{percent(report[f"{prefix}int8_top1"])} ({percent(report[f"{prefix}drop"])})'


def fine_tuned(report: Mapping[str, Any] | None) -> str:
  return top1_and_drop(report, 'fine_tuned_')


# How the table names a CPU's int8 instructions (acnet_jax.deploy.int8.cpu's names).
INSTRUCTION_NAMES = {
  'avx2': 'AVX2',
  'avx512bw': 'AVX-512',
  'avx512_vnni': 'VNNI',
  'avx_vnni': 'VNNI',
  'amx_int8': 'AMX',
}


def cpu_name(report: Mapping[str, Any]) -> str:
  """`model (its int8 instructions)`: the int8 top-1 can depend on them."""
  cpu = report.get('cpu')
  if not cpu:
    return 'not recorded'
  names = dict.fromkeys(INSTRUCTION_NAMES[i] for i in cpu['int8_instructions'])
  return f'{cpu["model"]} ({", ".join(names) or "no int8 instructions"})'


def full_schedule(reports: Reports) -> str:
  """Every campaign run exported: by arm, seed, then 8-bit before 7-bit weights."""
  arms, keyed = list(CAMPAIGN_ARMS), []
  for name, report in reports.items():
    match = CAMPAIGN_RUN.fullmatch(name)
    if match is None or match['arm'] not in CAMPAIGN_ARMS:
      continue  # Per-layer reports and analyses live beside them.
    key = (arms.index(match['arm']), int(match['seed']), bool(match['reduce_range']))
    line = [
      f'Cifar-quick {CAMPAIGN_ARMS[match["arm"]]}, seed {match["seed"]}, 150 epochs',
      '7-bit' if match['reduce_range'] else '8-bit',
      percent(report['float_top1']),
      top1_and_drop(report),
      top1_and_drop(report, 'reference_'),
      cpu_name(report),
    ]
    keyed.append((key, line))
  header = [
    'run',
    'weights',
    'float top-1',
    'int8 top-1 (drop)',
    'reference arithmetic (drop)',
    'CPU (int8 instructions)',
  ]
  return markdown_table(header, [line for _, line in sorted(keyed)])


def by_cpu(reports: Reports) -> str:
  """One row a report, by file name: 8-bit int8 with the CPU's integer kernels
  beside reference arithmetic, and the CPU that ran them."""
  lines = [
    [
      f'`{name}`',
      percent(report['float_top1']),
      top1_and_drop(report),
      top1_and_drop(report, 'reference_'),
      cpu_name(report),
    ]
    for name, report in sorted(reports.items())
  ]
  header = [
    'run',
    'float',
    'int8, 8-bit weights (drop)',
    '8-bit, reference arithmetic (drop)',
    'CPU (int8 instructions)',
  ]
  return markdown_table(header, lines)


def short_runs(reports: Reports) -> str:
  """Every kind's short run: 8-bit (and in reference arithmetic), 7-bit, and
  8-bit after each fine-tuning."""
  lines = []
  for run, kind in SHORT_RUNS:
    eight_bit = reports[run]
    lines.append(
      [
        f'`{run}`',
        kind,
        percent(eight_bit['float_top1']),
        top1_and_drop(eight_bit),
        top1_and_drop(eight_bit, 'reference_'),
        top1_and_drop(reports.get(f'{run}_reduce_range')),
        fine_tuned(reports.get(f'{run}_float_tuned')),
        fine_tuned(reports.get(f'{run}_qat')),
      ]
    )
  header = [
    'run',
    'kind',
    'float',
    'int8, 8-bit weights (drop)',
    '8-bit, reference arithmetic (drop)',
    'int8, 7-bit weights (drop)',
    'float fine-tuned, then 8-bit (drop)',
    'int8-aware fine-tuned, then 8-bit (drop)',
  ]
  return markdown_table(header, lines)


def short_fine_tuned_reference(reports: Reports) -> str:
  """Each short run's two 8-bit fine-tunings in reference arithmetic, where
  its fine-tuning reports have that column."""
  lines = []
  for run, _ in SHORT_RUNS:
    control, aware = reports.get(f'{run}_float_tuned'), reports.get(f'{run}_qat')
    if not any(r and 'fine_tuned_reference_int8_top1' in r for r in (control, aware)):
      continue
    lines.append(
      [
        f'`{run}`',
        top1_and_drop(reports[run], 'reference_'),
        top1_and_drop(control, 'fine_tuned_reference_'),
        top1_and_drop(aware, 'fine_tuned_reference_'),
      ]
    )
  header = [
    'run',
    '8-bit, reference arithmetic (drop)',
    'float fine-tuned, then the same (drop)',
    'int8-aware fine-tuned, then the same (drop)',
  ]
  return markdown_table(header, lines)


def short_layers(reports: Reports) -> str:
  """Each short run's layers quantized one at a time (`--int8_layers`): the
  whole model's drop, then each layer's alone, in graph order; 8-bit, 7-bit,
  and 8-bit in reference arithmetic."""
  lines = []
  for run, _ in SHORT_RUNS:
    for file, weights, prefix in (
      (f'{run}_layers', '8-bit', ''),
      (f'{run}_reduce_range_layers', '7-bit', ''),
      (f'{run}_layers', '8-bit, reference', 'reference_'),
    ):
      report = reports[file]
      if len(report['layers']) != len(CIFAR_QUICK_LAYERS):
        raise ValueError(
          f"{file}: {len(report['layers'])} layers, not Cifar-quick's {len(CIFAR_QUICK_LAYERS)}"
        )
      drops = [report[f'{prefix}drop'], *(layer[f'{prefix}drop'] for layer in report['layers'])]
      lines.append([f'`{run}`', weights, *map(percent, drops)])
  return markdown_table(['run', 'weights', 'whole model', *CIFAR_QUICK_LAYERS], lines)


def rc20_kinds(reports: Reports) -> str:
  """ResNet-20's short run of every kind: 8-bit, its reference, 7-bit."""
  lines = []
  for kind in RC20_KINDS:
    eight_bit = reports[f'rc20_{kind}']
    lines.append(
      [
        kind.replace('_', ' '),
        percent(eight_bit['float_top1']),
        top1_and_drop(eight_bit),
        top1_and_drop(eight_bit, 'reference_'),
        top1_and_drop(reports.get(f'rc20_{kind}_reduce_range')),
      ]
    )
  header = [
    'kind',
    'float',
    'int8, 8-bit weights (drop)',
    '8-bit, reference arithmetic (drop)',
    'int8, 7-bit weights (drop)',
  ]
  return markdown_table(header, lines)


def rc20_fine_tuned(reports: Reports) -> str:
  """The ResNet-20 runs that lose most, fine-tuned on each weight grid."""
  lines = []
  for kind, suffix in RC20_FINE_TUNED:
    aware = reports[f'rc20_{kind}_qat{suffix}']
    lines.append(
      [
        kind,
        '7-bit' if suffix.startswith('_reduce_range') else '8-bit',
        f'{aware["fine_tuning"]["learning_rate"]:g}',
        percent(aware['float_top1']),
        top1_and_drop(aware),
        fine_tuned(reports.get(f'rc20_{kind}_float_tuned{suffix}')),
        fine_tuned(aware),
      ]
    )
  header = [
    'kind',
    'weights',
    'learning rate',
    'float',
    'int8 (drop)',
    'float fine-tuned, then int8 (drop)',
    'int8-aware fine-tuned, then int8 (drop)',
  ]
  return markdown_table(header, lines)

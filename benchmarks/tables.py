"""The docs' generated tables: performance tables from the benchmarks' rows
(results/benchmarks/*.jsonl, `acnet_jax.benchmarking.results`):

    python -m benchmarks.tables [--check]

The int8 tables and the campaign's are made the same way from reports:
results/int8/<folder>/*.json (benchmarks/int8_tables.py) and a campaign's
results.json (benchmarks/campaign_tables.py). A page marks each
generated table as a region,

    <!-- table: NAME -->
    ...
    <!-- /table -->

and this command rewrites every region of README.md and docs/*.md from the
newest run of the rows its table reads (TABLES), or from its reports,
followed by a line linking those files. With --check it writes nothing and
exits 1 where a page differs from what it would write (a test runs it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from acnet_jax.benchmarking import exported
from acnet_jax.benchmarking.report import profile_markdown
from acnet_jax.benchmarking.results import RESULTS_DIR, newest_run, read_rows
from benchmarks import (
  acb_convs,
  acnet_over_normal,
  campaign_tables,
  int8_tables,
  pytorch_peer,
  torchvision_pipeline,
  xla_cpu_workarounds,
)

ROOT = Path(__file__).resolve().parents[1]
REGION = re.compile(
  r'^<!-- table: (?P<name>\w+) -->\n(?P<body>.*?)^<!-- /table -->$', re.MULTILINE | re.DOTALL
)


@dataclasses.dataclass(frozen=True)
class Table:
  files: tuple[str, ...]  # results_dir/<file>.jsonl; `render` takes the rows of each
  render: Callable[..., str]
  command: str  # What writes its rows.
  selected: Callable[[Mapping[str, Any]], bool] = lambda row: True


@dataclasses.dataclass(frozen=True)
class ReportTable:
  folder: str  # Beside the results directory: <results_dir>/../<folder>/*.json
  render: Callable[[Mapping[str, Any]], str]  # Takes the reports by file name, without .json.
  command: str  # What writes the reports.


def on_cpu(row: Mapping[str, Any], model: str) -> bool:
  """Whether the row was measured on a CPU whose model name starts with `model`."""
  return row.get('machine', {}).get('cpu', '').startswith(model)


CAMPAIGN_COLLECT = (
  'python -m acnet_jax.campaign --plan=configs/campaigns/cifar_quick_full.py --mode=collect'
)
INT8_EXPORT = 'python -m acnet_jax.export --format=onnx-int8 and python -m acnet_jax.qat'

TABLES: dict[str, Table | ReportTable] = {
  'pytorch_peer': Table(
    ('pytorch_peer',), pytorch_peer.markdown, 'python -m benchmarks.pytorch_peer'
  ),
  'acnet_over_normal': Table(
    ('acnet_over_normal',), acnet_over_normal.markdown, 'python -m benchmarks.acnet_over_normal'
  ),
  'acb_convs': Table(('acb_convs',), acb_convs.markdown, 'python -m benchmarks.acb_convs'),
  'xla_cpu_workarounds': Table(
    ('xla_cpu_workarounds',),
    xla_cpu_workarounds.markdown,
    'python -m benchmarks.xla_cpu_workarounds',
  ),
  'decoding': Table(
    ('decoding', 'torchvision_decoding'),
    torchvision_pipeline.markdown,
    'python -m acnet_jax.benchmark --pipeline and python -m benchmarks.torchvision_pipeline',
    lambda row: row['measure'] == 'decoding',
  ),
  # One table per kind of CPU: int8's speed depends on its int8 instructions.
  'exported': Table(
    ('exported',),
    exported.format_rows,
    'python -m acnet_jax.benchmark --exported=DIR',
    lambda row: on_cpu(row, 'AMD EPYC'),
  ),
  'exported_xeon': Table(
    ('exported',),
    exported.format_rows,
    'python -m acnet_jax.benchmark --exported=DIR',
    lambda row: on_cpu(row, 'Intel(R) Xeon(R)'),
  ),
  'profile': Table(
    ('benchmark',),
    profile_markdown,
    'python -m acnet_jax.benchmark --profile',
    lambda row: row['section'] == 'profile',
  ),
  'int8_full_schedule': ReportTable(
    'int8/cifar_quick_full',
    int8_tables.full_schedule,
    'python -m acnet_jax.export --format=onnx-int8',
  ),
  'int8_short_runs': ReportTable('int8/short', int8_tables.short_runs, INT8_EXPORT),
  'int8_xeon': ReportTable(
    'int8/xeon', int8_tables.by_cpu, 'python -m acnet_jax.export --format=onnx-int8'
  ),
  'int8_short_fine_tuned_reference': ReportTable(
    'int8/short', int8_tables.short_fine_tuned_reference, 'python -m acnet_jax.qat'
  ),
  'int8_short_layers': ReportTable(
    'int8/short', int8_tables.short_layers, 'python -m acnet_jax.export --int8_layers'
  ),
  'int8_rc20_kinds': ReportTable(
    'int8/short', int8_tables.rc20_kinds, 'python -m acnet_jax.export --format=onnx-int8'
  ),
  'int8_rc20_fine_tuned': ReportTable(
    'int8/short', int8_tables.rc20_fine_tuned, 'python -m acnet_jax.qat'
  ),
  'cifar_quick_full': ReportTable('cifar_quick_full', campaign_tables.arms, CAMPAIGN_COLLECT),
  'cifar_quick_full_curves': ReportTable(
    'cifar_quick_full', campaign_tables.curves, CAMPAIGN_COLLECT
  ),
}
# What a run carried over from a page has instead of a date, machine and versions.
CARRIED = 'measured before results were kept as data: no date, machine or versions recorded'


class MissingRows(Exception):
  pass


def region(name: str, results_dir: Path, page_dir: Path) -> str:
  """What the region of table `name` holds: the table, and a line linking its files."""
  if name not in TABLES:
    raise MissingRows(f'no table {name!r}; of: {", ".join(TABLES)}')
  table = TABLES[name]
  if isinstance(table, ReportTable):
    return report_region(name, table, results_dir.parent / table.folder, page_dir)
  runs, links = [], []
  for file in table.files:
    path = results_dir / f'{file}.jsonl'
    rows = newest_run(read_rows(str(path)), table.selected) if path.exists() else []
    if not rows:
      raise MissingRows(f'table {name}: no rows in {path}; {table.command} writes them')
    runs.append(rows)
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    links.append(f'[{shown}]({os.path.relpath(path, page_dir)})')
  carried = any('source' in row for rows in runs for row in rows)
  machines = dict.fromkeys(
    f'{row["machine"]["cpu"]}, {row["machine"]["cores"]} cores'
    for rows in runs
    for row in rows
    if 'machine' in row
  )
  where = f', on {" and ".join(machines)}' if machines else ''
  note = f' ({CARRIED})' if carried else ''
  return f'{table.render(*runs)}\n\nRows: {", ".join(links)}, the newest run{where}{note}.\n'


def report_region(name: str, table: ReportTable, folder: Path, page_dir: Path) -> str:
  reports = {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob('*.json'))}
  try:
    body = table.render(reports)
  except KeyError as missing:
    raise MissingRows(
      f'table {name}: no {missing} report in {folder}; {table.command} writes it'
    ) from None
  shown = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder
  return f'{body}\n\nReports: [{shown}/]({os.path.relpath(folder, page_dir)}/).\n'


def rewritten(text: str, results_dir: Path, page_dir: Path) -> str:
  def body(match: re.Match) -> str:
    name = match.group('name')
    return f'<!-- table: {name} -->\n{region(name, results_dir, page_dir)}<!-- /table -->'

  return REGION.sub(body, text)


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--results_dir', default=str(ROOT / RESULTS_DIR))
  parser.add_argument(
    '--pages',
    default=','.join(str(p) for p in [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]),
    help='Comma-separated markdown files.',
  )
  parser.add_argument('--check', action='store_true', help='Only say which pages differ.')
  args = parser.parse_args(argv)
  results_dir = Path(args.results_dir).resolve()
  differ = []
  for page in map(Path, args.pages.split(',')):
    text = page.read_text()
    try:
      new = rewritten(text, results_dir, page.resolve().parent)
    except MissingRows as error:
      sys.exit(f'{page}: {error}')
    if new != text:
      differ.append(str(page))
      if not args.check:
        page.write_text(new)
  verb = 'differ from their rows' if args.check else 'rewritten'
  print(f'{verb}: {", ".join(differ)}' if differ else 'every table matches its rows')
  if args.check and differ:
    sys.exit(1)


if __name__ == '__main__':
  main()

"""The docs' performance tables (benchmarks/tables.py): every marked region
of README.md and docs/*.md is what the newest rows in results/benchmarks
make of it, and the command rewrites a region from its rows."""

from __future__ import annotations

import pytest

from acnet_jax.benchmarking.results import append_rows, read_rows
from benchmarks import tables
from benchmarks.acb_convs import PASSES

PAGE = """# Speed

<!-- table: acb_convs -->
stale
<!-- /table -->

Text after it.
"""


def acb_row(ms: float) -> dict:
  return {
    'shape': '2x6x6x4',
    'branch': 'square',
    'conv': '3x3',
    'seconds': ms / 1e3,
    'gflop_per_s': 1.0,
  }


def write_runs(results, *runs: tuple[str, float]) -> None:
  for date, ms in runs:
    rows = [{**acb_row(ms), 'pass': p} for p in PASSES]
    append_rows(
      'acb_convs', rows, str(results), {'command': 'python -m benchmarks.acb_convs', 'date': date}
    )


def test_the_docs_tables_are_their_newest_rows():
  tables.main(['--check'])


def test_every_cpu_with_exported_speed_rows_has_a_table_on_a_page():
  """The export's speed tables are one per kind of CPU: rows measured on a
  new kind would otherwise be kept but shown nowhere."""
  pages = ''.join(
    path.read_text() for path in [tables.ROOT / 'README.md', *(tables.ROOT / 'docs').glob('*.md')]
  )
  shown = [
    table
    for name, table in tables.TABLES.items()
    if isinstance(table, tables.Table)
    and table.files == ('exported',)
    and f'<!-- table: {name} -->' in pages
  ]
  rows = read_rows(str(tables.ROOT / tables.RESULTS_DIR / 'exported.jsonl'))
  unshown = {row['machine']['cpu'] for row in rows if not any(t.selected(row) for t in shown)}
  assert not unshown, f'benchmarks/tables.py has no export speed table for {unshown}'


def test_a_region_is_rewritten_from_the_newest_run_and_the_check_says_so(tmp_path, capsys):
  results, page = tmp_path / 'results', tmp_path / 'docs' / 'speed.md'
  page.parent.mkdir()
  page.write_text(PAGE)
  write_runs(results, ('2000-01-01T00:00:00+00:00', 1.0), ('2000-01-02T00:00:00+00:00', 2.0))
  args = [f'--results_dir={results}', f'--pages={page}']
  with pytest.raises(SystemExit) as exit_info:
    tables.main([*args, '--check'])
  assert exit_info.value.code == 1 and page.read_text() == PAGE
  tables.main(args)
  text = page.read_text()
  assert text.startswith('# Speed\n\n<!-- table: acb_convs -->\n| N x H x W x C |')
  assert '| 2x6x6x4 | 3x3 | 2.00 ms, 1.0 |' in text and '1.00 ms' not in text
  assert (
    '\nRows: [' in text
    and '](../results/acb_convs.jsonl), the newest run.\n<!-- /table -->\n\nText after it.\n'
    in text
  )
  tables.main([*args, '--check'])
  assert capsys.readouterr().out.splitlines()[-1] == 'every table matches its rows'
  assert len(read_rows(str(results / 'acb_convs.jsonl'))) == 2 * len(PASSES)


def test_the_rows_line_names_the_cpu_they_were_measured_on(tmp_path):
  results, page = tmp_path / 'results', tmp_path / 'speed.md'
  rows = [{**acb_row(1.0), 'pass': p} for p in PASSES]
  machine = {'cpu': 'Some CPU', 'cores': 3, 'platform': 'Linux'}
  append_rows('acb_convs', rows, str(results), {'date': '2000-01-01', 'machine': machine})
  page.write_text(PAGE)
  tables.main([f'--results_dir={results}', f'--pages={page}'])
  assert 'the newest run, on Some CPU, 3 cores.' in page.read_text()


def test_rows_carried_over_from_a_page_say_so(tmp_path):
  results, page = tmp_path / 'results', tmp_path / 'speed.md'
  rows = [{**acb_row(1.0), 'pass': p} for p in PASSES]
  append_rows('acb_convs', rows, str(results), {'source': 'a page', 'command': 'python -m x'})
  page.write_text(PAGE)
  tables.main([f'--results_dir={results}', f'--pages={page}'])
  assert f'the newest run ({tables.CARRIED}).' in page.read_text()


def test_a_region_without_rows_or_of_no_table_is_an_error(tmp_path):
  page = tmp_path / 'speed.md'
  page.write_text(PAGE)
  with pytest.raises(
    SystemExit, match='no rows in .*acb_convs.jsonl; python -m benchmarks.acb_convs writes'
  ):
    tables.main([f'--results_dir={tmp_path}', f'--pages={page}'])
  page.write_text(PAGE.replace('acb_convs', 'no_such_table'))
  with pytest.raises(SystemExit, match="no table 'no_such_table'"):
    tables.main([f'--results_dir={tmp_path}', f'--pages={page}'])

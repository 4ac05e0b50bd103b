"""Benchmark results as data (acnet_jax/benchmarking/results.py): rows
appended with their run's command, date, machine and versions; the newest
run of a file; the markdown the docs' tables are written in."""

from __future__ import annotations

import datetime
import json

from acnet_jax.benchmarking.results import (
  append_rows,
  command_line,
  markdown_table,
  newest_run,
  read_rows,
  run_context,
)


def test_a_run_context_says_what_ran_when_where_and_with_which_versions():
  context = run_context('python -m benchmarks.acb_convs', 'cpu', ('jax', 'no-such-package'))
  assert context['command'] == 'python -m benchmarks.acb_convs'
  date = datetime.datetime.fromisoformat(context['date'])
  assert date.utcoffset() == datetime.timedelta(0)
  assert abs(datetime.datetime.now(datetime.UTC) - date) < datetime.timedelta(minutes=1)
  assert set(context['machine']) == {'cpu', 'cores', 'platform', 'device'}
  assert context['machine']['device'] == 'cpu' and context['machine']['cores'] >= 1
  assert list(context['versions']) == ['jax']


def test_the_command_line_can_be_pasted_into_a_shell():
  line = command_line('benchmarks.tables', ['--pages=a b.md', '--check'])
  assert line == "python -m benchmarks.tables '--pages=a b.md' --check"


def test_rows_are_appended_with_their_context_and_nothing_is_written_without_a_folder(tmp_path):
  first = {'command': 'python -m x', 'date': '2000-01-01T00:00:00+00:00'}
  second = {'command': 'python -m x --y', 'date': '2000-01-02T00:00:00+00:00'}
  path = append_rows('x', [{'ms': 1.0}, {'ms': 2.0}], str(tmp_path / 'results'), first)
  assert append_rows('x', [{'ms': 3.0}], str(tmp_path / 'results'), second) == path
  rows = read_rows(path)
  assert [row['ms'] for row in rows] == [1.0, 2.0, 3.0]
  assert rows[0] == {**first, 'ms': 1.0} and rows[2]['command'] == 'python -m x --y'
  assert json.loads((tmp_path / 'results' / 'x.jsonl').read_text().splitlines()[0])['ms'] == 1.0
  assert append_rows('y', [{'ms': 1.0}], '', first) is None
  assert not (tmp_path / 'y.jsonl').exists()


def test_the_newest_run_is_the_last_one_appended_that_has_selected_rows():
  old = [{'date': 'b', 'kind': 'a', 'n': 1}, {'date': 'b', 'kind': 'b', 'n': 2}]
  new = [{'date': 'a', 'kind': 'b', 'n': 3}, {'date': 'a', 'kind': 'b', 'n': 4}]
  carried = [{'source': 'page', 'kind': 'a', 'n': 0}]
  rows = carried + old + new
  assert [row['n'] for row in newest_run(rows, lambda row: True)] == [3, 4]
  assert [row['n'] for row in newest_run(rows, lambda row: row['kind'] == 'a')] == [1]
  assert [row['n'] for row in newest_run(carried, lambda row: True)] == [0]
  assert newest_run(rows, lambda row: row['kind'] == 'c') == []


def test_a_markdown_table_writes_an_empty_cell_as_a_bar_and_a_space():
  assert markdown_table(['a', 'b'], [['1', ''], ['', '2']]).splitlines() == [
    '| a | b |',
    '|---|---|',
    '| 1 | |',
    '| | 2 |',
  ]

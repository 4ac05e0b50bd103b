"""The CPU workarounds' benchmark (benchmarks/xla_cpu_workarounds.py) at batch
1, one round, a ReLU chain of 2 blocks: a row for every workaround a canary watches, each with two
positive times and their ratio, printed and appended to the results file."""

from __future__ import annotations

import pytest

from acnet_jax.benchmarking.results import read_rows
from acnet_jax.xla_cpu import canaries
from benchmarks import xla_cpu_workarounds


@pytest.mark.full  # Compiles both forms of every case, forward and backward: ~30 s.
def test_every_workaround_is_timed_against_its_plain_op(capsys, tmp_path):
  xla_cpu_workarounds.main(['--rounds=1', '--batch=1', '--blocks=2', f'--results_dir={tmp_path}'])
  header, *rows, appended = capsys.readouterr().out.splitlines()
  assert appended == f'appended its rows to {tmp_path / "xla_cpu_workarounds.jsonl"}'
  written = read_rows(str(tmp_path / 'xla_cpu_workarounds.jsonl'))
  assert [row['workaround'] for row in written] == list(canaries.CANARIES)
  for row in written:
    assert row['plain_over_workaround'] == pytest.approx(row['plain_s'] / row['workaround_s'])
    assert row['command'].startswith('python -m benchmarks.xla_cpu_workarounds')
  assert header.split()[:2] == ['workaround', 'on']
  assert [row.split()[0] for row in rows] == list(canaries.CANARIES)
  for row in rows:
    plain_ms, cpu_ms, ratio = (float(cell) for cell in row.split()[-3:])
    assert plain_ms > 0 and cpu_ms > 0
    assert ratio == pytest.approx(plain_ms / cpu_ms, rel=0.01, abs=0.01)

"""The ACB conv benchmark (benchmarks/acb_convs.py) on a tiny shape."""

from __future__ import annotations

import re

import pytest

from benchmarks.acb_convs import PASSES, branch_table, gflops, markdown, shape_rows


def test_gflops_of_one_pass_is_two_flops_per_multiply_add():
  assert gflops((2, 4, 4, 3), (3, 1)) == pytest.approx(2 * 2 * 4 * 4 * 3 * 3 * 3 / 1e9)


@pytest.mark.full  # Nine compiled passes.
def test_every_pass_of_every_branch_is_timed_printed_and_summed_against_the_square():
  rows = shape_rows((2, 6, 6, 4), k=3, repeats=1)
  assert [(row['branch'], row['conv'], row['pass']) for row in rows] == [
    (branch, conv, p)
    for branch, conv in (('square', '3x3'), ('ver', '3x1'), ('hor', '1x3'))
    for p in PASSES
  ]
  for row in rows:
    assert row['seconds'] > 0 and row['shape'] == '2x6x6x4'
    assert row['gflop_per_s'] == pytest.approx(
      gflops((2, 6, 6, 4), (3, 3)) * (1 if row['branch'] == 'square' else 1 / 3) / row['seconds']
    )
  lines = branch_table(rows, k=3)
  assert [line.split()[1] for line in lines[:3]] == ['square', 'ver', 'hor']
  for line in lines[:3]:
    times = [float(ms) for ms in re.findall(r'([\d.]+) ms', line)]
    assert len(times) == 3 and all(t > 0 for t in times)
  assert re.search(r'three convs / square conv: \d+\.\d\d \(FLOPs 1\.67\)', lines[3])


def row(shape: str, branch: str, conv: str, p: str, ms: float, rate: float) -> dict:
  return {
    'shape': shape,
    'branch': branch,
    'conv': conv,
    'pass': p,
    'seconds': ms / 1e3,
    'gflop_per_s': rate,
  }


def test_the_docs_table_names_a_shape_once_and_each_pass_in_ms_and_gflop_per_s():
  rows = [row('2x6x6x4', 'square', '3x3', p, 1.5 + i, 10.0 * (i + 1)) for i, p in enumerate(PASSES)]
  rows += [row('2x6x6x4', 'ver', '3x1', p, 0.25, 7.04) for p in PASSES]
  assert markdown(rows).splitlines() == [
    '| N x H x W x C | conv | forward | input gradient | weight gradient |',
    '|---|---|---|---|---|',
    '| 2x6x6x4 | 3x3 | 1.50 ms, 10.0 | 2.50 ms, 20.0 | 3.50 ms, 30.0 |',
    '| | 3x1 | 0.25 ms, 7.0 | 0.25 ms, 7.0 | 0.25 ms, 7.0 |',
  ]

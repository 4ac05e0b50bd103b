"""The ACB conv benchmark (benchmarks/acb_convs.py) on a tiny shape."""

from __future__ import annotations

import re

import pytest

from benchmarks.acb_convs import branch_table, gflops


def test_gflops_of_one_pass_is_two_flops_per_multiply_add():
  assert gflops((2, 4, 4, 3), (3, 1)) == pytest.approx(2 * 2 * 4 * 4 * 3 * 3 * 3 / 1e9)


def test_table_times_every_pass_of_every_branch_and_sums_them_against_the_square():
  lines = branch_table((2, 6, 6, 4), k=3, repeats=1)
  assert [line.split()[1] for line in lines[:3]] == ['square', 'ver', 'hor']
  for line in lines[:3]:
    times = [float(ms) for ms in re.findall(r'([\d.]+) ms', line)]
    assert len(times) == 3 and all(t > 0 for t in times)
  assert re.search(r'three convs / square conv: \d+\.\d\d \(FLOPs 1\.67\)', lines[3])

"""The interleaved acnet/normal ratio (benchmarks/acnet_over_normal.py)."""

from __future__ import annotations

import pytest

from benchmarks.acnet_over_normal import format_side, summarize


def test_summary_is_the_ratio_of_the_medians_with_the_pairs_quartiles():
  times = {'normal': [1.0, 2.0, 4.0, 1.0, 2.0], 'acnet': [2.0, 3.0, 4.0, 3.0, 8.0]}
  result = summarize(times)
  assert result['median_s'] == {'normal': 2.0, 'acnet': 3.0}
  assert result['ratio'] == pytest.approx(1.5)
  # Per pair: 2, 1.5, 1, 3, 4 -> sorted 1, 1.5, 2, 3, 4.
  assert result['turn_ratio_quartiles'] == pytest.approx([1.25, 2.0, 3.5])
  assert result['pairs'] == 5
  line = format_side('acnet_jax', result)
  assert 'acnet/normal 1.50' in line and 'per pair 2.00 (1.25 - 3.50, quartiles of 5)' in line

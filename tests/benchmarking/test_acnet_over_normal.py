"""The interleaved acnet/normal ratio (benchmarks/acnet_over_normal.py)."""

from __future__ import annotations

import pytest

from benchmarks.acnet_over_normal import format_side, markdown, summarize


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


def test_the_docs_table_has_a_line_per_side_and_names_a_model_measured_again():
  def side(model: str, key: str, normal: float) -> dict:
    return {
      'model': model,
      'side': key,
      'normal_s': normal,
      'acnet_s': 2 * normal,
      'ratio': 2.0,
      'pair_ratio_quartiles': [1.5, 2.0, 2.5],
    }

  rows = [side('rc56', 'acnet_jax', 0.5), side('rc56', 'pytorch', 0.4)] * 2
  assert markdown(rows).splitlines()[2:] == [
    '| rc56 | ours | 500.0 ms | 1000.0 ms | 2.00 | 2.00 (1.50 - 2.50) |',
    '| | PyTorch | 400.0 ms | 800.0 ms | 2.00 | 2.00 (1.50 - 2.50) |',
    '| rc56, again | ours | 500.0 ms | 1000.0 ms | 2.00 | 2.00 (1.50 - 2.50) |',
    '| | PyTorch | 400.0 ms | 800.0 ms | 2.00 | 2.00 (1.50 - 2.50) |',
  ]

"""The PyTorch peer's summary over rounds (benchmarks/pytorch_peer.py)."""

from __future__ import annotations

import pytest

from benchmarks.pytorch_peer import acnet_over_normal, format_rows, markdown, result_rows, summarize


def row(model: str, conv: str, ours: float, theirs: float, eval_s: float = 0.5) -> dict:
  return {
    'model': model,
    'conv': conv,
    'batch_size': 64,
    'acnet_jax': {'train_step_s': ours, 'eval_s': eval_s},
    'pytorch': {'train_step_s': theirs, 'eval_s': 2 * eval_s},
    'ratio': {'train_step_s': theirs / ours, 'eval_s': 2.0},
  }


def test_summary_takes_each_sides_median_over_rounds_and_the_ratios_range():
  rounds = [
    [row('rc56', 'normal', 1.0, 0.5), row('rc56', 'acnet', 2.0, 1.0)],
    [row('rc56', 'normal', 3.0, 0.9), row('rc56', 'acnet', 2.2, 1.2)],
    [row('rc56', 'normal', 2.0, 0.7), row('rc56', 'acnet', 2.4, 1.1)],
  ]
  normal, acnet = summarize(rounds)
  assert normal['acnet_jax']['train_step_s'] == 2.0
  assert normal['pytorch']['train_step_s'] == 0.7
  # The ratio of the medians, not the median of the ratios (0.5).
  assert normal['ratio']['train_step_s'] == pytest.approx(0.35)
  assert normal['ratio_range']['train_step_s'] == pytest.approx((0.3, 0.5))
  assert acnet['acnet_jax']['train_step_s'] == 2.2
  assert acnet_over_normal([normal, acnet]) == {
    'rc56': {'acnet_jax': pytest.approx(1.1), 'pytorch': pytest.approx(1.1 / 0.7)}
  }


def test_table_shows_ranges_only_for_several_rounds_and_the_acnet_over_normal_line():
  one_round = [row('rc56', 'normal', 1.0, 0.5), row('rc56', 'acnet', 2.0, 1.5)]
  table = format_rows(one_round)
  assert "rounds' ratios" not in table
  assert 'rc56 acnet / normal train step: acnet_jax 2.00, PyTorch 3.00' in table
  table = format_rows(summarize([one_round, one_round]))
  assert "rounds' ratios" in table
  assert '0.50 - 0.50' in table


def test_the_rows_are_data_a_measure_each_and_the_docs_table_is_made_of_them():
  rounds = [
    [row('rc56', 'normal', 1.0, 0.5), row('rc56', 'acnet', 2.0, 1.5, eval_s=0.25)],
    [row('rc56', 'normal', 1.0, 0.6), row('rc56', 'acnet', 2.0, 1.2, eval_s=0.25)],
  ]
  rows = result_rows(summarize(rounds))
  assert [(r['conv'], r['measure']) for r in rows] == [
    ('normal', 'train_step'),
    ('normal', 'eval'),
    ('acnet', 'train_step'),
    ('acnet', 'eval'),
  ]
  assert rows[0]['pytorch_s'] == pytest.approx(0.55)
  assert rows[0]['ratio_range'] == pytest.approx([0.5, 0.6])
  assert markdown(rows).splitlines() == [
    "| model | measure | ours | PyTorch | ratio | rounds' ratios |",
    '|---|---|---|---|---|---|',
    '| rc56 normal | train step | 1000.0 ms | 550.0 ms | 0.55 | 0.50 - 0.60 |',
    '| | eval | 500.0 ms | 1000.0 ms | 2.00 | 2.00 - 2.00 |',
    '| rc56 acnet | train step | 2000.0 ms | 1350.0 ms | 0.68 | 0.60 - 0.75 |',
    '| | eval (unfused) | 250.0 ms | 500.0 ms | 2.00 | 2.00 - 2.00 |',
    '| rc56 acnet / normal | train step | 2.00 | 2.45 | | |',
  ]

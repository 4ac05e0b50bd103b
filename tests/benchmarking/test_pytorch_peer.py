"""The PyTorch peer's summary over rounds (benchmarks/pytorch_peer.py)."""

from __future__ import annotations

import pytest

from benchmarks.pytorch_peer import acnet_over_normal, format_rows, summarize


def row(model: str, conv: str, ours: float, theirs: float) -> dict:
  return {
    'model': model,
    'conv': conv,
    'batch_size': 64,
    'acnet_jax': {'train_step_s': ours},
    'pytorch': {'train_step_s': theirs},
    'ratio': {'train_step_s': theirs / ours},
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

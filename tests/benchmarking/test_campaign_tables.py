"""The docs' campaign tables (benchmarks/campaign_tables.py): collect's
arm table as it wrote it, and each run's curve as a row of its tests."""

from __future__ import annotations

from acnet_jax.campaigns import results
from benchmarks import campaign_tables

ARMS = [
  {
    'arm': 'acnet',
    'published': 86.87,
    'by_seed': {'0': 83.89},
    'n': 1,
    'mean': 83.89,
    'sd': None,
    'max_fused_diff': 0.0,
  }
]
RUNS = [
  {'arm': 'normal', 'seed': 0, 'curve': [[10.0, 72.23], [20.0, 77.12]]},
  {'arm': "acnet, PyTorch (authors' code)", 'seed': 0, 'curve': [[10.0, 74.08]]},
]


def test_the_arm_table_is_collects_and_the_curves_a_row_a_run():
  reports = {'results': {'arms': ARMS, 'runs': RUNS}}
  assert campaign_tables.arms(reports) + '\n' == results.markdown_table(ARMS)
  assert campaign_tables.curves(reports).splitlines() == [
    '| epoch | 10 | 20 |',
    '|---|---|---|',
    '| normal, seed 0 | 72.23 | 77.12 |',
    "| acnet, PyTorch (authors' code), seed 0 | 74.08 | – |",
  ]

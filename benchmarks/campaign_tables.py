"""The docs' tables of a campaign (docs/results.md), made from the
`results.json` that `python -m acnet_jax.campaign --mode=collect` writes into
its results folder; benchmarks/tables.py writes them into the pages' regions
and checks them there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from acnet_jax.benchmarking.results import markdown_table
from acnet_jax.campaigns import results

Reports = Mapping[str, Mapping[str, Any]]


def arms(reports: Reports) -> str:
  """Published against here, an arm a row: collect's table.md."""
  return results.markdown_table(reports['results']['arms']).rstrip('\n')


def epoch(value: float) -> str:
  return f'{value:g}'


def curves(reports: Reports) -> str:
  """Each finished run's test top-1 at each test, a run a row, an epoch a column."""
  runs = reports['results']['runs']
  epochs = sorted({point[0] for run in runs for point in run['curve']})
  lines = []
  for run in runs:
    top1 = {point[0]: point[1] for point in run['curve']}
    lines.append(
      [
        f'{run["arm"]}, seed {run["seed"]}',
        *(f'{top1[e]:.2f}' if e in top1 else '–' for e in epochs),
      ]
    )
  return markdown_table(['epoch', *map(epoch, epochs)], lines)

"""The README's Python example runs as printed (it builds a model, fuses it
and asserts that the deploy model gives the trained model's logits), and its
results table is the campaign's."""

from __future__ import annotations

import re

import pytest

from tests.support.runs import ROOT


def python_blocks(markdown: str) -> list[str]:
  return re.findall(r'```python\n(.*?)```', markdown, flags=re.DOTALL)


@pytest.mark.full  # Its eager init and applies compile op by op: ~20 s.
def test_the_readme_api_example_runs():
  blocks = python_blocks((ROOT / 'README.md').read_text())
  assert blocks, 'the README has no ```python example'
  for block in blocks:
    exec(compile(block, 'README.md', 'exec'), {})


def test_the_readme_shows_the_campaigns_table_as_collected():
  """The results table is the one `--mode=collect` wrote, row for row: a
  collect that changes it without the README fails here."""
  readme = (ROOT / 'README.md').read_text().splitlines()
  table = (ROOT / 'results' / 'cifar_quick_full' / 'table.md').read_text().strip().splitlines()
  start = readme.index(table[0])
  assert readme[start : start + len(table)] == table

"""The README's Python example runs as printed (it builds a model, fuses it
and asserts that the deploy model gives the trained model's logits), its
results table is the campaign's, and its preset table the presets' records."""

from __future__ import annotations

import re

import pytest

from tests.support.preset_table import markdown_table, preset_files
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


def test_the_readme_shows_the_preset_table_of_the_records():
  """The preset table is the one rendered from acnet_jax/training/presets.py
  and the configs/ files: a record changed without the README fails here."""
  readme = (ROOT / 'README.md').read_text().splitlines()
  table = markdown_table(preset_files())
  start = readme.index(table[0])
  shown = readme[start : start + len(table)]
  assert shown == table, 'python -m tests.support.preset_table prints the table to paste'

"""The README's preset table, rendered from the records of
acnet_jax/training/presets.py and the configs/ files that name them; the
README test compares it line for line. Print it with
`python -m tests.support.preset_table`."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from acnet_jax.training import presets

CONFIG_DIR = Path(__file__).parents[2] / 'configs'
HEADER = (
  "| recipe | models | preset files | values it sets (the rest: `config.py`'s defaults) |",
  '|---|---|---|---|',
)


def load_config_file(path: Path, *args: str):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(*args)


def preset_files(config_dir: Path = CONFIG_DIR) -> dict[tuple[str, str], list[str]]:
  """(model, recipe) -> the files whose config is exactly that preset (in one
  conv kind), leaving out each model's MODEL.py, which takes any try_arg."""
  files: dict[tuple[str, str], list[str]] = {}
  for path in sorted(config_dir.glob('*.py')):
    config = load_config_file(path)
    if path.stem == config.model or not config.try_arg:
      continue
    base = presets.preset(config.model, config.try_arg)
    if config == base:
      recipe = config.try_arg.partition('_')[2]
      files.setdefault((config.model, recipe), []).append(path.name)
  return files


def format_value(value: Any) -> str:
  if isinstance(value, tuple):
    return '/'.join(format_value(item) for item in value)
  return f'{value:g}' if isinstance(value, float) else str(value)


def paired(names: Sequence[str]) -> list[str]:
  """'x_normal.py', 'x_acnet.py' as 'x_{normal,acnet}.py'."""
  pairs = []
  for name in names:
    if '_normal' in name and name.replace('_normal', '_acnet') in names:
      pairs.append(name.replace('_normal', '_{normal,acnet}'))
    elif not ('_acnet' in name and name.replace('_acnet', '_normal') in names):
      pairs.append(name)
  return pairs


def values_cell(rows: Sequence[presets.Preset]) -> str:
  """The values all rows share, then those that differ by model."""
  keys = list(dict.fromkeys(key for row in rows for key in row.values))
  shared = [key for key in keys if len({repr(row.values.get(key)) for row in rows}) == 1]
  cell = ', '.join(f'`{key}={format_value(rows[0].values[key])}`' for key in shared)
  varying = [key for key in keys if key not in shared]
  if varying:
    by_values: dict[str, list[str]] = {}
    for row in rows:
      combination = '/'.join(format_value(row.values[key]) for key in varying)
      by_values.setdefault(combination, []).append(row.model)
    names = '/'.join(f'`{key}`' for key in varying)
    per_model = '; '.join(f'{values} {", ".join(models)}' for values, models in by_values.items())
    cell += f'; {names} by model: {per_model}'
  return cell


def markdown_table(files: Mapping[tuple[str, str], list[str]]) -> list[str]:
  lines = list(HEADER)
  for recipe in dict.fromkeys(row.recipe for row in presets.PRESETS):
    rows = [row for row in presets.PRESETS if row.recipe == recipe]
    names = paired([name for row in rows for name in files.get((row.model, recipe), [])])
    lines.append(
      f'| `{recipe}` | {", ".join(row.model for row in rows)} | '
      f'{", ".join(f"`{name}`" for name in names)} | {values_cell(rows)} |'
    )
  return lines


if __name__ == '__main__':
  print('\n'.join(markdown_table(preset_files())))

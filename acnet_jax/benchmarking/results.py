"""Benchmark results as data: every benchmark command appends its rows to
`results/benchmarks/<name>.jsonl`, each row carrying the command line, the
UTC date the command started, the machine and the package versions beside
its numbers. The docs' performance tables are generated from these files
(`python -m benchmarks.tables`), so a number there can be traced to its row
and rerun.

A table reads the newest run of its file: the last rows appended by one
command (one date). Rows carried over from a page written before results were
kept as data have no date, machine or versions; they name their `source`.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# Relative to the repository root, where the commands run.
RESULTS_DIR = os.path.join('results', 'benchmarks')
RESULTS_DIR_HELP = "Append the rows here as <name>.jsonl; '' = write nothing."
JAX_PACKAGES = ('jax', 'jaxlib', 'flax')


def command_line(module: str, argv: Sequence[str] | None = None) -> str:
  """How to run it again: `python -m module argv...` (by default this
  process's arguments), quoted for a shell."""
  return shlex.join(['python', '-m', module, *(sys.argv[1:] if argv is None else argv)])


def cpu_model() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine(device: str | None = None) -> dict[str, Any]:
  """The CPU, the cores this process may use, the OS, and what computed (`device`, where given)."""
  host = {
    'cpu': cpu_model(),
    'cores': len(os.sched_getaffinity(0)),
    'platform': platform.platform(),
  }
  return host if device is None else {**host, 'device': device}


def versions(packages: Sequence[str]) -> dict[str, str]:
  """Package -> installed version, of those named that are installed."""
  found = {}
  for package in packages:
    try:
      found[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      pass
  return found


def run_context(command: str, device: str, packages: Sequence[str]) -> dict[str, Any]:
  """What every row of one run carries: command, date, machine, versions."""
  return {
    'command': command,
    'date': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
    'machine': machine(device),
    'versions': versions(packages),
  }


def append_rows(
  name: str, rows: Sequence[Mapping[str, Any]], results_dir: str, context: Mapping[str, Any]
) -> str | None:
  """Appends each row, with the run's context, to results_dir/<name>.jsonl and
  returns the file's path; writes nothing where results_dir is ''."""
  if not results_dir:
    return None
  os.makedirs(results_dir, exist_ok=True)
  path = os.path.join(results_dir, f'{name}.jsonl')
  with open(path, 'a') as f:
    for row in rows:
      f.write(json.dumps({**context, **row}) + '\n')
  return path


def read_rows(path: str) -> list[dict[str, Any]]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def run_of(row: Mapping[str, Any]) -> tuple[str | None, str | None]:
  return row.get('date'), row.get('source')


def newest_run(
  rows: Sequence[Mapping[str, Any]], selected: Callable[[Mapping[str, Any]], bool]
) -> list[Mapping[str, Any]]:
  """The selected rows of the last run that has any: rows are appended, so
  the last of them is the newest."""
  chosen = [row for row in rows if selected(row)]
  if not chosen:
    return []
  last = run_of(chosen[-1])
  return [row for row in chosen if run_of(row) == last]


def markdown_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
  """A markdown table; an empty cell is written `| |`."""
  row = lambda cells: '|' + ''.join(f' {cell} |' if cell else ' |' for cell in cells)
  return '\n'.join([row(header), '|' + '---|' * len(header), *map(row, lines)])

"""notebooks/fusion.ipynb runs top to bottom in a fresh kernel (full tier):
training its own tiny run, and on a run named relative to the repository
while the kernel runs in notebooks/, as Jupyter starts it."""

from __future__ import annotations

import shutil
import uuid

import nbclient
import nbformat
import pytest

from tests.support.runs import ROOT


def execute(notebook, folder) -> None:
  """In a kernel that imports this checkout's acnet_jax (the caller sets PYTHONPATH)."""
  nbclient.NotebookClient(
    notebook, timeout=600, kernel_name='python3', resources={'metadata': {'path': str(folder)}}
  ).execute()


@pytest.mark.full
def test_the_fusion_notebook_trains_its_own_run_when_given_none(tmp_path, monkeypatch):
  monkeypatch.setenv('TMPDIR', str(tmp_path))  # Where it trains and exports.
  monkeypatch.setenv('PYTHONPATH', str(ROOT))
  execute(nbformat.read(ROOT / 'notebooks' / 'fusion.ipynb', as_version=4), tmp_path)


@pytest.mark.full
def test_the_fusion_notebook_finds_a_run_relative_to_the_repository(
  tiny_run, tmp_path, monkeypatch
):
  relative = f'runs/notebook_test_{uuid.uuid4().hex[:8]}'
  shutil.copytree(tiny_run, ROOT / relative)
  files = lambda: {p: p.stat().st_mtime_ns for p in (ROOT / relative).rglob('*')}
  before = files()
  try:
    monkeypatch.setenv('TMPDIR', str(tmp_path))
    monkeypatch.setenv('PYTHONPATH', str(ROOT))
    notebook = nbformat.read(ROOT / 'notebooks' / 'fusion.ipynb', as_version=4)
    (cell,) = [c for c in notebook.cells if c.source.startswith('WORKDIR = ')]
    cell.source = f'WORKDIR = {relative!r}'
    execute(notebook, ROOT / 'notebooks')
    # The run is read, never written: its export/ is the one training wrote.
    assert files() == before
  finally:
    shutil.rmtree(ROOT / relative)

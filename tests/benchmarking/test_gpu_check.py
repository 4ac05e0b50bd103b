"""benchmarks/gpu_check.sh at toy sizes on the CPU (SMOKE=1): every section
runs to its end, so the script a GPU user runs has no broken step."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.runs import ROOT, cli_environment

SECTIONS = (
  'the numerical tests on cpu',
  'bitwise resume after a kill during a save',
  'rc56: train step, eval, fused eval',
  'resnet50 at 224 px',
  'the loop against the bare step',
  'done',
)


@pytest.mark.full  # Several minutes: the script's every section at toy sizes.
def test_the_gpu_check_runs_every_section_on_the_cpu(tmp_path):
  env = cli_environment(BACKEND='cpu', SMOKE='1', OUT=str(tmp_path), PYTHON=sys.executable)
  completed = subprocess.run(
    ['bash', os.path.join('benchmarks', 'gpu_check.sh')],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=3700,  # Above the sections' limits together (SMOKE's 4x).
  )
  log = (tmp_path / 'gpu_check.txt').read_text()
  assert completed.returncode == 0, completed.stderr[-3000:]
  for section in SECTIONS:
    assert f'== {section} (' in log, log[-3000:]
  assert '(exit ' not in log, log[-5000:]
  assert ' passed' in log and ' failed' not in log, log[-5000:]
  for name in ('rc56.json', 'resnet50.json', 'loop.json'):
    assert (tmp_path / name).stat().st_size > 0, name
  for name in ('benchmark.jsonl', 'loop_overhead.jsonl'):
    assert (tmp_path / 'results' / name).stat().st_size > 0, name

"""The authors' recipe in PyTorch as a campaign's reference run
(benchmarks/authors_reference.py) on a tiny image folder: stopped by SIGTERM
in its second epoch and started again, it ends where an uninterrupted run
ends, bit for bit, in the layout the campaign reads."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from acnet_jax.campaigns import results
from acnet_jax.campaigns.plan import Plan, Run
from acnet_jax.campaigns.runner import is_finished, newest_checkpoint_step
from benchmarks.authors_reference import epoch_seeds
from tests.support.images import make_image_folder
from tests.support.runs import ROOT, cli_environment
from tests.support.torch_extra import require_torch

# 2 classes x 16 training images in batches of 8: 4 iterations an epoch.
STEPS_PER_EPOCH, EPOCHS = 4, 3
FLAGS = [
  '--arm=acnet',
  '--seed=1',
  f'--epochs={EPOCHS}',
  '--batch_size=8',
  '--eval_every_epochs=2',
  '--eval_batch_size=8',
  '--threads=1',
]
# The run, with SIGTERM sent to itself as its 6th iteration (the 2nd of epoch 2) starts.
SIGNALLED_AT = 6
SIGNALLED = f"""
import os, signal, sys
from benchmarks import authors_reference as reference
step, calls = reference.train_step, []
def signalled(*args):
  calls.append(None)
  if len(calls) == {SIGNALLED_AT}:
    os.kill(os.getpid(), signal.SIGTERM)
  return step(*args)
reference.train_step = signalled
reference.main(sys.argv[1:])
"""


def test_each_epochs_draws_have_their_own_seeds():
  seeds = {epoch_seeds(seed, epoch) for seed in range(3) for epoch in range(3)}
  assert len({s for pair in seeds for s in pair}) == 18
  assert epoch_seeds(0, 1) == epoch_seeds(0, 1)


def reference(workdir, data, *flags, signalled: bool = False) -> subprocess.CompletedProcess:
  code = ['-c', SIGNALLED] if signalled else ['-m', 'benchmarks.authors_reference']
  return subprocess.run(
    [sys.executable, *code, f'--workdir={workdir}', f'--data_dir={data}', *flags],
    cwd=ROOT,
    env=cli_environment(),
    capture_output=True,
    text=True,
    timeout=600,
  )


def checkpoint(workdir) -> dict:
  import torch

  step = newest_checkpoint_step(str(workdir))
  return torch.load(workdir / 'checkpoints' / str(step) / 'state.pt')


def assert_bitwise_equal(a, b, path='') -> None:
  import torch

  if isinstance(a, dict):
    assert a.keys() == b.keys(), path
    for key in a:
      assert_bitwise_equal(a[key], b[key], f'{path}/{key}')
  elif isinstance(a, torch.Tensor):
    assert torch.equal(a, b), path
  else:
    assert a == b, path


@pytest.mark.full
@pytest.mark.needs_torch
def test_a_run_stopped_in_an_epoch_resumes_to_the_uninterrupted_runs_end(tmp_path):
  require_torch()
  data = make_image_folder(tmp_path / 'images', 16, 8, num_classes=2, eval_split='test', size=32)
  whole, stopped = tmp_path / 'whole', tmp_path / 'stopped'
  done = reference(whole, data, *FLAGS)
  assert done.returncode == 0, done.stderr[-3000:]

  interrupted = reference(stopped, data, *FLAGS, signalled=True)
  assert interrupted.returncode == 128 + signal.SIGTERM, interrupted.stderr[-3000:]
  assert 'Stopped by SIGTERM; the checkpoint of step 4' in interrupted.stderr
  assert 'Run the same command again to resume' in interrupted.stderr
  assert newest_checkpoint_step(str(stopped)) == STEPS_PER_EPOCH  # Epoch 2 is lost.
  assert not (stopped / 'eval.json').exists() and not is_finished(str(stopped))
  resumed = reference(stopped, data, *FLAGS)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert 'Resuming from the checkpoint of epoch 1 (step 4)' in resumed.stderr

  assert_bitwise_equal(checkpoint(stopped), checkpoint(whole))
  evaluation = json.loads((whole / 'eval.json').read_text())
  assert json.loads((stopped / 'eval.json').read_text()) == evaluation
  assert (stopped / 'metrics.jsonl').read_text() == (whole / 'metrics.jsonl').read_text()
  assert evaluation['step'] == EPOCHS * STEPS_PER_EPOCH
  assert evaluation['fused_top1'] == evaluation['top1'] and evaluation['fused_matches']
  assert evaluation['num_examples'] == 16

  # What the campaign reads: finished, and a row of the table.
  assert is_finished(str(stopped))
  plan = Plan(
    'p', (Run('torch_acnet_seed1', 'acnet', 'acnet, PyTorch', 1, trainer='pytorch_reference'),)
  )
  assert results.copy_evidence(plan, str(tmp_path), str(tmp_path / 'results')) == []
  stopped.rename(tmp_path / 'torch_acnet_seed1')
  assert results.copy_evidence(plan, str(tmp_path), str(tmp_path / 'results')) == [
    'torch_acnet_seed1'
  ]
  (row,) = results.summarize(plan, str(tmp_path / 'results'))['runs']
  assert row['top1'] == 100 * evaluation['top1'] and row['epochs'] == EPOCHS
  tests = [json.loads(line) for line in (whole / 'metrics.jsonl').read_text().splitlines()]
  assert row['curve'] == [
    [e['step'] / STEPS_PER_EPOCH, 100 * e['test_top1']] for e in tests if 'test_top1' in e
  ]
  assert [c[0] for c in row['curve']] == [2.0, 3.0]

  # Another recipe in the same workdir is refused.
  other = reference(whole, data, *FLAGS, '--epochs=4')
  assert other.returncode == 1
  assert 'num_epochs: 3 -> 4' in other.stderr and 'Nothing was changed' in other.stderr
  assert newest_checkpoint_step(str(whole)) == EPOCHS * STEPS_PER_EPOCH

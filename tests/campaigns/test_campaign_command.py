"""python -m acnet_jax.campaign through real subprocesses (the full tier): a
two-run plan stopped by SIGTERM in its first run and started again ends with
both runs evaluated and no step of the first trained twice."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.runs import ROOT, cli_environment, finish, run_command

TINY_PLAN = """
from acnet_jax.campaigns.plan import Plan, Run

TINY = {'model': 'rc8', 'dataset': 'synthetic', 'synthetic_examples': 64, 'batch_size': 16,
        'eval_batch_size': 16, 'warmup_epochs': 0, 'lr_boundaries_epochs': '1',
        'checkpoint_every_steps': 4, 'log_every_steps': 1, 'eval_every_epochs': 2}


def get_plan():
  return Plan('tiny', (Run('first', 'configs/rc56_acnet.py', 'acnet', 0,
                           overrides={'num_epochs': 100}),
                       Run('second', 'configs/rc56_normal.py', 'normal', 0,
                           overrides={'num_epochs': 2})),
              overrides=TINY)
"""
FIRST_RUN_STEPS = 400  # 100 epochs of 4: long enough to be stopped midway.


def start_campaign(plan: Path, root: Path) -> subprocess.Popen:
  return subprocess.Popen(
    [sys.executable, '-m', 'acnet_jax.campaign', f'--plan={plan}', f'--root={root}'],
    cwd=ROOT,
    env=cli_environment(),
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )


def trained_steps(workdir: Path) -> list[int]:
  lines = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  return [line['step'] for line in lines if 'train_loss' in line]


def wait_for_a_checkpoint(workdir: Path, process: subprocess.Popen) -> None:
  deadline = time.time() + 300
  while time.time() < deadline and process.poll() is None:
    if (workdir / 'checkpoints').is_dir() and any(
      p.name.isdigit() and int(p.name) >= 8 for p in (workdir / 'checkpoints').iterdir()
    ):
      return
    time.sleep(0.05)
  raise AssertionError(f'the first run saved no checkpoint: {finish(process)[-2000:]}')


@pytest.mark.full
def test_a_stopped_campaign_resumes_its_run_and_goes_on(tmp_path):
  plan, root = tmp_path / 'plan.py', tmp_path / 'runs'
  plan.write_text(TINY_PLAN)
  process = start_campaign(plan, root)
  wait_for_a_checkpoint(root / 'first', process)
  process.send_signal(signal.SIGTERM)
  output = finish(process)
  assert process.returncode == 128 + signal.SIGTERM, output[-2000:]
  assert 'run the same command again to resume' in output
  assert not (root / 'first' / 'eval.json').exists()
  assert not (root / 'second').exists()  # Nothing starts after a stop.
  stopped_at = trained_steps(root / 'first')[-1]
  assert stopped_at < FIRST_RUN_STEPS

  again = start_campaign(plan, root)
  output = finish(again)
  assert again.returncode == 0, output[-2000:]
  assert f'resuming from the checkpoint of step {stopped_at:,}' in output
  assert trained_steps(root / 'first') == list(range(1, FIRST_RUN_STEPS + 1))  # None twice.
  for run, steps in (('first', FIRST_RUN_STEPS), ('second', 8)):
    assert json.loads((root / run / 'eval.json').read_text())['step'] == steps
  starts = [
    json.loads(line) for line in (root / 'first' / 'campaign.jsonl').read_text().splitlines()
  ]
  assert [(s['from_step'], s['to_step'], s['exit_code']) for s in starts] == [
    (None, stopped_at, 128 + signal.SIGTERM),
    (stopped_at, FIRST_RUN_STEPS, 0),
  ]

  finished = run_command('campaign', f'--plan={plan}', f'--root={root}')
  assert finished.returncode == 0
  assert finished.stderr.count('finished, skipped') == 2


@pytest.mark.full
def test_a_second_campaign_on_the_same_root_is_refused(tmp_path):
  plan, root = tmp_path / 'plan.py', tmp_path / 'runs'
  plan.write_text(TINY_PLAN)
  process = start_campaign(plan, root)
  try:
    wait_for_a_checkpoint(root / 'first', process)
    second = run_command('campaign', f'--plan={plan}', f'--root={root}')
    assert second.returncode == 1
    assert 'in use by another campaign' in second.stderr
    assert f'--root={root}' in second.stderr  # The holder's command line.
  finally:
    process.send_signal(signal.SIGTERM)
    finish(process)

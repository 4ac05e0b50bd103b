"""The runner's choice of command per run, without training anything: each
run's trainer is started as `python -m MODULE` and named in campaign.jsonl."""

from __future__ import annotations

import json
import sys

from acnet_jax.benchmarking.results import machine
from acnet_jax.campaigns import runner
from acnet_jax.campaigns.plan import Plan, Run


def test_each_run_is_started_by_its_trainers_module_and_recorded(tmp_path, monkeypatch):
  plan = Plan(
    'p',
    (
      Run('ours', 'configs/cfqkbnc_acnet.py', 'acnet', 0),
      Run('theirs', 'acnet', 'acnet, PyTorch', 0, trainer='pytorch_reference'),
    ),
    overrides={'eval_every_epochs': 10},
  )
  commands = []
  monkeypatch.setattr(runner.Supervisor, 'run', lambda self, command: commands.append(command) or 0)
  assert runner.run_plan(plan, str(tmp_path), '/data') == 0
  assert [command[:3] for command in commands] == [
    [sys.executable, '-m', 'acnet_jax.main'],
    [sys.executable, '-m', 'benchmarks.authors_reference'],
  ]
  assert commands[1][3:] == [
    f'--workdir={tmp_path / "theirs"}',
    '--arm=acnet',
    '--seed=0',
    '--data_dir=/data',
  ]
  for run, module in (('ours', 'acnet_jax.main'), ('theirs', 'benchmarks.authors_reference')):
    (start,) = [
      json.loads(line) for line in (tmp_path / run / 'campaign.jsonl').read_text().splitlines()
    ]
    assert start['module'] == module and start['arguments'] == commands[run == 'theirs'][3:]
    assert start['machine'] == machine()


def test_a_run_whose_evidence_was_collected_is_not_trained_again(tmp_path, monkeypatch):
  """A collected run counts as finished though its workdir is gone; one whose
  results folder holds no eval.json is still trained."""
  plan = Plan(
    'p',
    (
      Run('collected', 'configs/cfqkbnc_normal.py', 'normal', 0),
      Run('pending', 'configs/cfqkbnc_acnet.py', 'acnet', 0),
    ),
  )
  results = tmp_path / 'results'
  (results / 'collected').mkdir(parents=True)
  (results / 'collected' / 'eval.json').write_text('{"step": 10}')
  (results / 'pending').mkdir()
  commands = []
  monkeypatch.setattr(runner.Supervisor, 'run', lambda self, command: commands.append(command) or 0)
  assert runner.run_plan(plan, str(tmp_path / 'root'), '/data', str(results)) == 0
  (command,) = commands
  assert f'--workdir={tmp_path / "root" / "pending"}' in command

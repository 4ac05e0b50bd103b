"""The results of a campaign from its runs' evidence files: which runs count
as finished, what is copied, and the table's numbers."""

from __future__ import annotations

import json
import statistics

import pytest

from acnet_jax.campaigns import results
from acnet_jax.campaigns.plan import Plan, Run
from acnet_jax.campaigns.runner import is_finished, newest_checkpoint_step

PLAN = Plan(
  'p',
  (
    Run('normal_seed0', 'c.py', 'normal', 0),
    Run('acnet_seed0', 'c.py', 'acnet', 0),
    Run('acnet_seed1', 'c.py', 'acnet', 1),
    Run('normal_seed1', 'c.py', 'normal', 1),
  ),
  published={'normal': 86.20, 'acnet': 86.87},
)


def write_run(
  workdir,
  top1: float,
  fused_top1: float,
  step: int = 20,
  deploy: bool = True,
  test_top1=((10, 0.5), (20, 0.7)),
):
  workdir.mkdir(parents=True)
  (workdir / 'config.json').write_text(json.dumps({'num_epochs': 2}))
  (workdir / 'eval.json').write_text(
    json.dumps({'step': step, 'top1': top1, 'fused_top1': fused_top1, 'num_examples': 100})
  )
  lines = [{'step': s, 'train_loss': 1.0} for s in range(1, step + 1)]
  lines += [{'step': s, 'test_top1': t} for s, t in test_top1]
  (workdir / 'metrics.jsonl').write_text(''.join(json.dumps(x) + '\n' for x in lines))
  (workdir / 'checkpoints' / str(step)).mkdir(parents=True)
  if deploy:
    (workdir / 'deploy' / str(step)).mkdir(parents=True)


def test_a_run_is_finished_only_with_the_deploy_variables_of_its_eval_step(tmp_path):
  write_run(tmp_path / 'trained', 0.8, 0.8)
  write_run(tmp_path / 'only_evaluated', 0.8, 0.8, deploy=False)
  assert is_finished(str(tmp_path / 'trained'))
  assert not is_finished(str(tmp_path / 'only_evaluated'))
  assert not is_finished(str(tmp_path / 'absent'))
  assert newest_checkpoint_step(str(tmp_path / 'trained')) == 20
  assert newest_checkpoint_step(str(tmp_path / 'absent')) is None


def test_collect_copies_finished_runs_and_tabulates_each_arm(tmp_path):
  root, out = tmp_path / 'root', tmp_path / 'results'
  write_run(root / 'normal_seed0', 0.8610, 0.8610)
  write_run(root / 'acnet_seed0', 0.8690, 0.8689)
  write_run(root / 'acnet_seed1', 0.8650, 0.8650)
  write_run(root / 'normal_seed1', 0.9, 0.9, deploy=False)  # Not finished: left out.
  assert results.copy_evidence(PLAN, str(root), str(out)) == [
    'normal_seed0',
    'acnet_seed0',
    'acnet_seed1',
  ]
  assert not (out / 'normal_seed1').exists()
  report = results.summarize(PLAN, str(out))
  normal, acnet = report['arms']
  assert normal['n'] == 1 and normal['sd'] is None
  assert normal['mean'] == pytest.approx(86.10)
  assert acnet['mean'] == pytest.approx(86.70)
  assert acnet['sd'] == pytest.approx(statistics.stdev([86.90, 86.50]))
  assert acnet['max_fused_diff'] == pytest.approx(0.01)
  assert acnet['by_seed'] == pytest.approx({'0': 86.90, '1': 86.50})
  table = (out / 'table.md').read_text().splitlines()
  assert table[2] == '| normal | 86.20 | 86.10 | – | 86.10 (1) | -0.10 | 0.00 |'
  assert table[3] == '| acnet | 86.87 | 86.90 | 86.50 | 86.70 ± 0.28 (2) | -0.17 | 0.01 |'
  assert json.loads((out / 'results.json').read_text())['arms'] == report['arms']
  curves = (out / 'curves.svg').read_text()
  for label in ('normal, seed 0', 'acnet, seed 0', 'acnet, seed 1', 'acnet, published'):
    assert f'>{label}<' in curves
  assert 'normal, seed 1' not in curves
  results.summarize(PLAN, str(out))  # Committed beside the evidence: the same bytes again.
  assert (out / 'curves.svg').read_text() == curves


def test_the_curve_is_in_epochs_and_keeps_the_last_of_a_repeated_step(tmp_path):
  metrics = [
    {'step': 10, 'test_top1': 0.5},
    {'step': 10, 'test_top1': 0.6},
    {'step': 20, 'test_top1': 0.7},
    {'step': 15, 'train_loss': 1.0},
  ]
  assert results.test_curve(metrics, steps_per_epoch=10) == [[1.0, 60.0], [2.0, 70.0]]


def test_a_reference_arm_is_a_row_of_its_own_not_seeds_of_ours(tmp_path):
  reference = "normal, PyTorch (authors' code)"
  plan = Plan(
    'p',
    (
      Run('normal_seed0', 'c.py', 'normal', 0),
      Run('torch_normal_seed0', 'normal', reference, 0, trainer='pytorch_reference'),
      Run('normal_seed1', 'c.py', 'normal', 1),
    ),
    published={'normal': 86.20, reference: 86.20},
  )
  root, out = tmp_path / 'root', tmp_path / 'results'
  for name, top1 in (
    ('normal_seed0', 0.8345),
    ('torch_normal_seed0', 0.8600),
    ('normal_seed1', 0.8355),
  ):
    write_run(root / name, top1, top1)
  results.copy_evidence(plan, str(root), str(out))
  report = results.summarize(plan, str(out))
  ours, theirs = report['arms']
  assert (ours['arm'], ours['n'], ours['mean']) == ('normal', 2, pytest.approx(83.50))
  assert (theirs['arm'], theirs['n'], theirs['by_seed']) == (
    reference,
    1,
    pytest.approx({'0': 86.00}),
  )
  assert [row['trainer'] for row in report['runs']] == [
    'acnet_jax',
    'pytorch_reference',
    'acnet_jax',
  ]
  assert (out / 'table.md').read_text().splitlines()[
    3
  ] == f'| {reference} | 86.20 | 86.00 | – | 86.00 (1) | -0.20 | 0.00 |'
  assert f'>{reference}, seed 0<' in (out / 'curves.svg').read_text()

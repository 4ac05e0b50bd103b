"""What a run reports: metrics.jsonl, and TensorBoard's own reader finding the
same scalars in the event files."""

from __future__ import annotations

import json

import pytest
from tensorboard.backend.event_processing import event_accumulator

from tests.conftest import TINY_RUN_STEPS


def test_metrics_and_events_hold_every_logged_value(tiny_run):
  lines = [json.loads(r) for r in (tiny_run / 'metrics.jsonl').read_text().splitlines()]
  train = [r for r in lines if 'train_loss' in r]
  assert [r['step'] for r in train] == list(range(1, TINY_RUN_STEPS + 1))
  assert {
    'train_loss',
    'train_lr',
    'train_top1',
    'train_steps_per_s',
    'train_data_wait_share',
  } <= set(train[0])
  (final,) = [r for r in lines if 'test_fused_top1' in r]
  assert final['step'] == TINY_RUN_STEPS
  assert final['test_top1'] == json.loads((tiny_run / 'eval.json').read_text())['top1']

  events = event_accumulator.EventAccumulator(str(tiny_run / 'tensorboard'))
  events.Reload()
  logged = [(s.step, s.value) for s in events.Scalars('train_loss')]
  assert logged == [(r['step'], pytest.approx(r['train_loss'])) for r in train]
  assert [s.step for s in events.Scalars('test_fused_top1')] == [TINY_RUN_STEPS]

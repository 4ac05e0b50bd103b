"""The benchmark command runs and reports every field (no timing assertions:
this machine is too noisy for them; the numbers live in the README)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMING_FIELDS = ('compile_s', 'step_s', 'images_per_s', 'flops', 'flops_per_s',
                 'fraction_of_peak')


def positive(value) -> bool:
  return isinstance(value, float) and math.isfinite(value) and value > 0


def test_benchmark_reports_every_field(tmp_path):
  out = tmp_path / 'bench.json'
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}
  completed = subprocess.run(
      [sys.executable, '-m', 'acnet_jax.benchmark', '--model=cfqkbnc', '--batch_size=8',
       '--eval_batch_size=16', '--steps=2', '--warmup=1', '--train_examples=64',
       '--matmul_size=256', '--breakdown', '--convs=normal,acnet,dbb,repvgg',
       f'--output={out}'],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert completed.returncode == 0, completed.stderr[-3000:]
  report = json.loads(out.read_text())

  assert report['environment']['num_devices'] == 2
  assert report['environment']['backend'] == 'cpu'
  assert positive(report['peak_flops_per_s'])
  variants = [('normal', '-'), ('acnet', 'branches'), ('acnet', 'stacked'), ('dbb', '-'),
              ('repvgg', '-')]
  train_rows = {(r['conv'], r['acb_impl'], r['feed']): r for r in report['train']}
  assert set(train_rows) == {(*v, feed) for v in variants for feed in ('pipeline', 'on_device')}
  eval_rows = {(r['conv'], r['acb_impl']): r for r in report['eval']}
  assert set(eval_rows) == {*variants, ('deploy', '-')}
  for row in [*train_rows.values(), *eval_rows.values()]:
    assert all(positive(row[field]) for field in TIMING_FIELDS), row
  for variant in variants:
    assert math.isfinite(train_rows[(*variant, 'pipeline')]['pipeline_overhead'])
  parts = {(r['conv'], r['acb_impl']): r for r in report['breakdown']}
  assert set(parts) == set(variants)
  for row in parts.values():
    assert all(positive(row[f'{part}_{field}']) for part in
               ('forward', 'input_gradients', 'all_gradients') for field in ('s', 'flops')), row
  devices = {(r['conv'], r['num_devices']) for r in report['devices']}
  assert devices == {(conv, n) for conv in ('normal', 'acnet', 'dbb', 'repvgg') for n in (1, 2)}
  assert all(positive(r['images_per_s']) for r in report['devices'])
  assert set(report['ratios']) == {
      'train_time_acnet_branches/normal', 'train_time_acnet_stacked/normal',
      'train_time_dbb/normal', 'train_time_repvgg/normal', 'train_flops_acnet/normal',
      'train_flops_dbb/normal', 'train_flops_repvgg/normal', 'eval_throughput_deploy/normal',
      'eval_throughput_deploy/acnet_branches', 'eval_throughput_deploy/acnet_stacked',
      'eval_throughput_deploy/dbb', 'eval_throughput_deploy/repvgg'}
  assert all(positive(v) for v in report['ratios'].values())
  # The printed table has a row per measurement.
  assert completed.stdout.count('\ntrain ') == 10 and completed.stdout.count('\neval ') == 6
  assert completed.stdout.count('\nparts ') == 5

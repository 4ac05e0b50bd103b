"""python -m acnet_jax.benchmark runs every measurement on 2 forced devices,
writes its JSON where --output says and appends its rows to --results_dir;
--pipeline decodes a tiny image folder (full tier; the numbers live in the docs)."""

from __future__ import annotations

import json
import os
import tempfile

import pytest

from acnet_jax.benchmarking.results import read_rows
from tests.support.images import make_image_folder
from tests.support.runs import ROOT, run_command


@pytest.mark.full
def test_the_benchmark_measures_every_variant(tmp_path):
  out = tmp_path / 'bench.json'
  completed = run_command(
    'benchmark',
    '--model=cfqkbnc',
    '--batch_size=8',
    '--eval_batch_size=16',
    '--steps=2',
    '--warmup=1',
    '--train_examples=64',
    '--matmul_size=256',
    '--breakdown',
    '--convs=normal,acnet,dbb,repvgg,acnet_online',
    f'--output={out}',
    f'--results_dir={tmp_path / "results"}',
    XLA_FLAGS='--xla_force_host_platform_device_count=2',
  )
  assert completed.returncode == 0, completed.stderr[-3000:]
  report = json.loads(out.read_text())
  assert report['environment']['num_devices'] == 2 and report['environment']['backend'] == 'cpu'
  # The command added the project's flag to the user's.
  assert report['environment']['xla_flags'] == (
    '--xla_force_host_platform_device_count=2 --xla_cpu_experimental_ynn_fusion_type='
  )
  variants = [
    ('normal', '-'),
    ('acnet', 'branches'),
    ('acnet', 'stacked'),
    ('dbb', '-'),
    ('repvgg', '-'),
    ('acnet_online', '-'),
  ]
  assert {(r['conv'], r['acb_impl'], r['feed']) for r in report['train']} == {
    (*v, feed) for v in variants for feed in ('pipeline', 'on_device')
  }
  assert {(r['conv'], r['acb_impl']) for r in report['eval']} == {*variants, ('deploy', '-')}
  for row in [*report['train'], *report['eval']]:
    assert row['flops_per_s'] == pytest.approx(row['flops'] / row['step_s'])
    assert row['images_per_s'] == pytest.approx(
      (8 if row in report['train'] else 16) / row['step_s']
    )
    assert row['peak_bytes'] > 0
  assert {(r['conv'], r['acb_impl']) for r in report['breakdown']} == set(variants)
  assert {(r['conv'], r['num_devices']) for r in report['devices']} == {
    (conv, n) for conv in ('normal', 'acnet', 'dbb', 'repvgg', 'acnet_online') for n in (1, 2)
  }
  normal = next(r for r in report['train'] if r['conv'] == 'normal' and r['feed'] == 'pipeline')
  dbb = next(r for r in report['train'] if r['conv'] == 'dbb' and r['feed'] == 'pipeline')
  assert report['ratios']['train_time_dbb/normal'] == pytest.approx(
    dbb['step_s'] / normal['step_s']
  )
  assert {
    'train_time_acnet_online/acnet_branches',
    'train_memory_acnet_online/acnet_stacked',
    'train_memory_acnet_online/normal',
  } <= set(report['ratios'])
  assert completed.stdout.count('\ntrain ') == 12 and completed.stdout.count('\neval ') == 7
  assert f'wrote {out}' in completed.stdout
  rows = read_rows(str(tmp_path / 'results' / 'benchmark.jsonl'))
  assert len(rows) == 1 + 12 + 7 + 6 + 10 + len(report['ratios'])
  assert {row['date'] for row in rows} == {rows[0]['date']}
  assert rows[0]['command'].startswith('python -m acnet_jax.benchmark --model=cfqkbnc ')
  assert rows[0]['machine']['device'] == '2 x cpu (cpu)'
  assert set(rows[0]['versions']) == {'jax', 'jaxlib', 'flax'}
  assert [r['step_s'] for r in rows if r['section'] == 'train'] == [
    r['step_s'] for r in report['train']
  ]


@pytest.mark.full
def test_the_decoding_command_times_each_crop_and_worker_count(tmp_path):
  folder = make_image_folder(tmp_path / 'folder', 8, 1, num_classes=2, real=False)
  completed = run_command(
    'benchmark',
    '--pipeline',
    f'--data_dir={folder}',
    '--crop_sizes=32,16',
    '--num_workers=1,2',
    '--batch_size=4',
    '--decode_batches=2',
    f'--output={tmp_path / "decoding.json"}',
    f'--results_dir={tmp_path / "results"}',
  )
  assert completed.returncode == 0, completed.stderr[-3000:]
  rows = read_rows(str(tmp_path / 'results' / 'decoding.jsonl'))
  assert [(r['measure'], r['image_size'], r['num_workers']) for r in rows] == [
    ('decoding', size, workers) for size in (32, 16) for workers in (1, 2)
  ]
  assert all(r['images'] == 8 and r['images_per_s'] > 0 for r in rows)
  assert 'grain' in rows[0]['versions'] and 'fed by the stream' not in completed.stdout


def test_the_default_output_is_the_temporary_folder_not_the_repository():
  from acnet_jax import benchmark

  default = benchmark.FLAGS['output'].default
  assert os.path.dirname(default) == tempfile.gettempdir()
  assert not default.startswith(str(ROOT))

"""The benchmark's arithmetic, from known timings: ratios, FLOP/s and the
fraction of the peak, and the table's rows; its conv names."""

from __future__ import annotations

import types

import numpy as np
import pytest

from acnet_jax.benchmarking.profile import KINDS
from acnet_jax.benchmarking.report import format_report, profile_markdown, ratios, report_rows
from acnet_jax.benchmarking.suite import parse_conv
from acnet_jax.benchmarking.timing import Timing, xla_peak_bytes
from acnet_jax.errors import InputError

NORMAL = Timing(compile_s=1.0, step_s=0.2, flops=4e9, batch_size=64, peak_bytes=100e6)
ACNET = Timing(compile_s=2.0, step_s=0.5, flops=7e9, batch_size=64, peak_bytes=250e6)
STACKED = Timing(compile_s=2.0, step_s=0.4, flops=12e9, batch_size=64, peak_bytes=300e6)
ONLINE = Timing(compile_s=1.5, step_s=0.25, flops=4.5e9, batch_size=64, peak_bytes=120e6)
DEPLOY = Timing(compile_s=0.5, step_s=0.1, flops=2e9, batch_size=500)
NORMAL_EVAL = Timing(compile_s=0.5, step_s=0.125, flops=2.5e9, batch_size=500)


def test_ratios_of_known_timings():
  train = {
    ('normal', '-'): NORMAL,
    ('acnet', 'branches'): ACNET,
    ('acnet', 'stacked'): STACKED,
    ('acnet_online', '-'): ONLINE,
  }
  evals = {('normal', '-'): NORMAL_EVAL, ('deploy', '-'): DEPLOY}
  assert ratios(train, evals) == pytest.approx(
    {
      'train_time_acnet_branches/normal': 2.5,
      'train_time_acnet_stacked/normal': 2.0,
      'train_time_acnet_online/normal': 1.25,
      'train_memory_acnet_branches/normal': 2.5,
      'train_memory_acnet_stacked/normal': 3.0,
      'train_memory_acnet_online/normal': 1.2,
      # The online kind against its offline form in each computation.
      'train_time_acnet_online/acnet_branches': 0.5,
      'train_time_acnet_online/acnet_stacked': 0.625,
      'train_memory_acnet_online/acnet_branches': 0.48,
      'train_memory_acnet_online/acnet_stacked': 0.4,
      # The FLOPs of the first computation of a kind: branches, not stacked.
      'train_flops_acnet/normal': 1.75,
      'train_flops_acnet_online/normal': 1.125,
      'eval_throughput_deploy/normal': 1.25,
    }
  )


def test_benchmark_conv_names_are_the_kinds_and_the_kinds_online():
  assert parse_conv('repvgg') == ('repvgg', False)
  assert parse_conv('dbb_online') == ('dbb', True)
  with pytest.raises(
    InputError,
    match="unknown conv 'normal_online' for the benchmark; valid: "
    'normal, acnet, dbb, repvgg, acnet_online, dbb_online, '
    'repvgg_online',
  ):
    parse_conv('normal_online')


def test_a_row_is_flop_per_s_and_its_share_of_the_peak():
  row = ACNET.row(28e9, conv='acnet', acb_impl='branches')
  assert row['images_per_s'] == pytest.approx(128.0)
  assert row['flops_per_s'] == pytest.approx(14e9)
  assert row['fraction_of_peak'] == pytest.approx(0.5)
  assert row['peak_bytes'] == 250e6


REPORT = {
  'environment': {
    'model': 'rc56',
    'image_size': 32,
    'num_devices': 1,
    'device_kind': 'cpu',
    'backend': 'cpu',
    'batch_size': 64,
    'eval_batch_size': 500,
    'steps': 5,
    'warmup': 2,
    'xla_flags': '',
  },
  'peak_flops_per_s': 28e9,
  'train': [
    {
      **ACNET.row(28e9, conv='acnet', acb_impl='branches', dtype='float32', feed='pipeline'),
      'pipeline_overhead': 0.03,
    }
  ],
  'eval': [DEPLOY.row(28e9, conv='deploy', acb_impl='-', dtype='float32')],
  'breakdown': [
    {
      'conv': 'acnet',
      'acb_impl': 'branches',
      'forward_s': 0.1,
      'forward_flops': 2e9,
      'input_gradients_s': 0.25,
      'input_gradients_flops': 4e9,
      'all_gradients_s': 0.5,
      'all_gradients_flops': 7e9,
    }
  ],
  'devices': [],
  'profile': {},
  'ratios': {'train_time_acnet_branches/normal': 2.5},
}


def test_the_table_prints_every_row_and_ratio():
  table = format_report(REPORT).splitlines()
  assert 'peak (float32 matmul): 28.0 GFLOP/s' in table
  assert table[4].split() == [
    'train',
    'acnet',
    'branches',
    'float32',
    'pipeline',
    '128.0',
    '500.0',
    '2.0',
    '14.0',
    '50.0%',
    '238.4',
    '3.0%',
  ]
  assert table[5].split() == [
    'eval',
    'deploy',
    '-',
    'float32',
    '5000.0',
    '100.0',
    '0.5',
    '20.0',
    '71.4%',
    'nan',
  ]
  # forward 2 GFLOP in 100 ms; + 2 GFLOP in 150 ms; + 3 GFLOP in 250 ms.
  assert (
    'forward 100 ms (20 GFLOP/s), + input grads 150 ms (13 GFLOP/s), '
    '+ weight grads 250 ms (12 GFLOP/s)' in table[7]
  )
  assert table[-1].split() == ['train_time_acnet_branches/normal', '2.500']


def test_step_memory_is_arguments_outputs_not_donated_and_temporaries():
  stats = types.SimpleNamespace(
    argument_size_in_bytes=100,
    output_size_in_bytes=60,
    alias_size_in_bytes=40,
    temp_size_in_bytes=500,
    peak_memory_in_bytes=100,
  )
  assert xla_peak_bytes(types.SimpleNamespace(memory_analysis=lambda: stats)) == 620
  assert np.isnan(xla_peak_bytes(types.SimpleNamespace(memory_analysis=lambda: None)))


def test_the_reports_rows_are_its_sections_each_with_the_runs_settings():
  profiled = {**REPORT, 'profile': {'acnet': dict.fromkeys(KINDS, 0.001)}}
  rows = report_rows(profiled)
  sections = [row['section'] for row in rows]
  assert sections == ['peak', 'train', 'eval', 'breakdown', *['profile'] * len(KINDS), 'ratio']
  assert all(row['model'] == 'rc56' and row['warmup'] == 2 for row in rows)
  assert rows[1]['step_s'] == ACNET.step_s and rows[1]['pipeline_overhead'] == 0.03
  assert (rows[-1]['name'], rows[-1]['value']) == ('train_time_acnet_branches/normal', 2.5)


def test_the_docs_profile_table_is_ms_a_step_per_kind_and_their_sum():
  profiled = {
    **REPORT,
    'profile': {'normal': dict.fromkeys(KINDS, 0.001), 'acnet': dict.fromkeys(KINDS, 0.002)},
  }
  rows = [row for row in report_rows(profiled) if row['section'] == 'profile']
  lines = profile_markdown(rows).splitlines()
  assert lines[0] == '| ms a step | rc56 normal | rc56 acnet |'
  assert lines[2] == f'| {KINDS[0]} | 1.0 | 2.0 |'
  assert lines[-1] == f'| the step (traced + untraced) | {len(KINDS):.1f} | {2 * len(KINDS):.1f} |'


def test_the_profile_table_leaves_out_a_kind_of_op_no_step_has():
  none_of_it = {**dict.fromkeys(KINDS, 0.001), KINDS[1]: 0.0}
  profiled = {**REPORT, 'profile': {'normal': none_of_it, 'acnet': {**none_of_it, KINDS[2]: 0.0}}}
  rows = [row for row in report_rows(profiled) if row['section'] == 'profile']
  kinds = [line.split(' | ')[0][2:] for line in profile_markdown(rows).splitlines()[2:-1]]
  assert kinds == [kind for kind in KINDS if kind != KINDS[1]]

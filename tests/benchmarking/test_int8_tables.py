"""The docs' int8 tables (benchmarks/int8_tables.py): each cell is its
report's number, a missing column says so, and the page's region is rewritten
from the reports folder beside the results directory."""

from __future__ import annotations

import json

import pytest

from benchmarks import int8_tables, tables


def export_report(float_top1: float, int8_top1: float, reference: float | None = None) -> dict:
  report = {'float_top1': float_top1, 'int8_top1': int8_top1, 'drop': float_top1 - int8_top1}
  if reference is not None:
    report |= {'reference_int8_top1': reference, 'reference_drop': float_top1 - reference}
  return report


def fine_tuning_report(float_top1: float, tuned: float, reference: float | None = None) -> dict:
  report = {
    **export_report(float_top1, float_top1 - 0.02),
    'fine_tuned_int8_top1': tuned,
    'fine_tuned_drop': float_top1 - tuned,
  }
  if reference is not None:
    report |= {
      'fine_tuned_reference_int8_top1': reference,
      'fine_tuned_reference_drop': float_top1 - reference,
    }
  return report


def test_full_schedule_rows_go_by_arm_seed_and_weights_and_skip_other_files():
  amd = {'model': 'AMD EPYC', 'int8_instructions': ['avx2']}
  xeon = {
    'model': 'Intel Xeon',
    'int8_instructions': ['avx2', 'avx512bw', 'avx512_vnni', 'avx_vnni', 'amx_int8'],
  }
  reports = {
    'acnet_seed0_reduce_range': {**export_report(0.8389, 0.8393, 0.8393), 'cpu': amd},
    'acnet_seed0': {**export_report(0.8389, 0.6677, 0.8376), 'cpu': amd},
    'normal_seed1': {**export_report(0.8350, 0.8340), 'cpu': xeon},
    'normal_seed0': export_report(0.8345, 0.8345),
    'acnet_seed0_layers': export_report(0.0, 0.0),
  }
  lines = int8_tables.full_schedule(reports).splitlines()
  assert lines[2:] == [
    '| Cifar-quick normal, seed 0, 150 epochs | 8-bit | 83.45 | 83.45 (0.00) | not measured '
    '| not recorded |',
    '| Cifar-quick normal, seed 1, 150 epochs | 8-bit | 83.50 | 83.40 (0.10) | not measured '
    '| Intel Xeon (AVX2, AVX-512, VNNI, AMX) |',
    '| Cifar-quick ACNet, seed 0, 150 epochs | 8-bit | 83.89 | 66.77 (17.12) | 83.76 (0.13) '
    '| AMD EPYC (AVX2) |',
    '| Cifar-quick ACNet, seed 0, 150 epochs | 7-bit | 83.89 | 83.93 (-0.04) | 83.93 (-0.04) '
    '| AMD EPYC (AVX2) |',
  ]


def test_short_runs_fill_each_column_from_its_report():
  reports = {run: export_report(0.5, 0.49, 0.5) for run, _ in int8_tables.SHORT_RUNS}
  reports['repvgg_reduce_range'] = export_report(0.5961, 0.5630)
  reports['repvgg_float_tuned'] = fine_tuning_report(0.5961, 0.5777, 0.5938)
  reports['repvgg_qat'] = fine_tuning_report(0.5961, 0.5855, 0.6016)
  lines = int8_tables.short_runs(reports).splitlines()
  assert len(lines) == 2 + len(int8_tables.SHORT_RUNS)
  assert lines[5] == (
    '| `repvgg` | repvgg | 50.00 | 49.00 (1.00) | 50.00 (0.00) | 56.30 (3.31) '
    '| 57.77 (1.84) | 58.55 (1.06) |'
  )
  assert lines[2].endswith('| not measured | not measured | not measured |')
  reference = int8_tables.short_fine_tuned_reference(reports).splitlines()
  assert reference[2:] == ['| `repvgg` | 50.00 (0.00) | 59.38 (0.23) | 60.16 (-0.55) |']


def test_a_region_is_written_from_the_reports_and_a_missing_one_is_named(tmp_path):
  folder = tmp_path / 'int8' / 'short'
  folder.mkdir(parents=True)
  for kind in int8_tables.RC20_KINDS:
    (folder / f'rc20_{kind}.json').write_text(json.dumps(export_report(0.4684, 0.4613, 0.4669)))
  page = tmp_path / 'docs' / 'deploy.md'
  page.parent.mkdir()
  page.write_text('<!-- table: int8_rc20_kinds -->\nstale\n<!-- /table -->\n')
  args = [f'--results_dir={tmp_path / "benchmarks"}', f'--pages={page}']
  tables.main(args)
  text = page.read_text()
  assert '| normal | 46.84 | 46.13 (0.71) | 46.69 (0.15) | not measured |' in text
  assert 'Reports: [' in text and '](../int8/short/).\n<!-- /table -->' in text
  (folder / 'rc20_dbb.json').unlink()
  with pytest.raises(SystemExit, match="no 'rc20_dbb' report in .*python -m acnet_jax.export"):
    tables.main([*args, '--check'])


def test_layers_rows_are_the_whole_model_then_each_layer_and_need_cifar_quicks_five():
  def layers_report(drops: list[float], reference: list[float]) -> dict:
    layers = [{'drop': d, 'reference_drop': r} for d, r in zip(drops[1:], reference[1:])]
    return {'drop': drops[0], 'reference_drop': reference[0], 'layers': layers}

  eight = layers_report([0.0329, 0.0315, 0.0003, 0.0006, 0.0028, 0.0036], [0.0025] + [0.0] * 5)
  seven = layers_report([0.0024] * 6, [0.0] * 6)
  reports = {}
  for run, _ in int8_tables.SHORT_RUNS:
    reports |= {f'{run}_layers': eight, f'{run}_reduce_range_layers': seven}
  lines = int8_tables.short_layers(reports).splitlines()
  assert lines[0] == '| run | weights | whole model | conv1 | conv2 | conv3 | fc1 | fc2 |'
  assert lines[2:5] == [
    '| `normal` | 8-bit | 3.29 | 3.15 | 0.03 | 0.06 | 0.28 | 0.36 |',
    '| `normal` | 7-bit | 0.24 | 0.24 | 0.24 | 0.24 | 0.24 | 0.24 |',
    '| `normal` | 8-bit, reference | 0.25 | 0.00 | 0.00 | 0.00 | 0.00 | 0.00 |',
  ]
  reports['dbb_layers'] = layers_report([0.01] * 4, [0.0] * 4)
  with pytest.raises(ValueError, match="dbb_layers: 3 layers, not Cifar-quick's 5"):
    int8_tables.short_layers(reports)


def test_rc20_fine_tuned_rows_name_their_grid_and_learning_rate():
  reports = {}
  for kind, suffix in int8_tables.RC20_FINE_TUNED:
    lr = 1e-4 if suffix.endswith('lr1e-4') else 1e-3
    aware = fine_tuning_report(0.4549, 0.4496) | {'fine_tuning': {'learning_rate': lr}}
    reports[f'rc20_{kind}_qat{suffix}'] = aware
  lines = int8_tables.rc20_fine_tuned(reports).splitlines()
  assert lines[2:5] == [
    '| repvgg | 8-bit | 0.001 | 45.49 | 43.49 (2.00) | not measured | 44.96 (0.53) |',
    '| repvgg | 7-bit | 0.001 | 45.49 | 43.49 (2.00) | not measured | 44.96 (0.53) |',
    '| repvgg | 7-bit | 0.0001 | 45.49 | 43.49 (2.00) | not measured | 44.96 (0.53) |',
  ]


def test_by_cpu_puts_each_report_beside_its_reference_and_cpu():
  xeon = {'model': 'Intel Xeon', 'int8_instructions': ['avx2', 'avx512_vnni', 'amx_int8']}
  reports = {
    'repvgg': {**export_report(0.5884, 0.5836, 0.5837), 'cpu': xeon},
    'acnet': {**export_report(0.5937, 0.5937, 0.5937), 'cpu': xeon},
  }
  assert int8_tables.by_cpu(reports).splitlines()[2:] == [
    '| `acnet` | 59.37 | 59.37 (0.00) | 59.37 (0.00) | Intel Xeon (AVX2, VNNI, AMX) |',
    '| `repvgg` | 58.84 | 58.36 (0.48) | 58.37 (0.47) | Intel Xeon (AVX2, VNNI, AMX) |',
  ]

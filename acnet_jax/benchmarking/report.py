"""The benchmark's report: ratios between kinds, the printed table, its rows
as data (`results`) and the docs' table of where a train step goes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from acnet_jax.benchmarking.profile import KINDS, format_profile
from acnet_jax.benchmarking.results import markdown_table
from acnet_jax.benchmarking.timing import Timing

# The parts of a train step that `suite.time_gradient_parts` times, cumulatively.
GRADIENT_PARTS = ('forward', 'input_gradients', 'all_gradients')
# A conv kind trained online is named `<kind>_online` in the report.
ONLINE_SUFFIX = '_online'


def ratios(
  train_timings: dict[tuple[str, str], Timing], eval_timings: dict[tuple[str, str], Timing]
) -> dict[str, float]:
  """Each training-time kind's train-step time and peak memory relative to
  normal, next to its FLOPs ratio (XLA's count of the first computation: for
  acnet 'branches', the work an ACB needs); each online kind's time and peak
  memory relative to its offline form; and deploy eval throughput relative to
  normal and to each unfused kind. Keys name the kind and, for acnet, the impl."""
  out: dict[str, float] = {}
  label = lambda conv, impl: conv if impl == '-' else f'{conv}_{impl}'
  normal = train_timings.get(('normal', '-'))
  for (conv, impl), timing in train_timings.items():
    if conv != 'normal' and normal:
      out[f'train_time_{label(conv, impl)}/normal'] = timing.step_s / normal.step_s
      out[f'train_memory_{label(conv, impl)}/normal'] = timing.peak_bytes / normal.peak_bytes
      if f'train_flops_{conv}/normal' not in out:
        out[f'train_flops_{conv}/normal'] = timing.flops / normal.flops
    offline = [
      (key, other) for key, other in train_timings.items() if f'{key[0]}{ONLINE_SUFFIX}' == conv
    ]
    for (offline_conv, offline_impl), other in offline:
      name = f'{conv}/{label(offline_conv, offline_impl)}'
      out[f'train_time_{name}'] = timing.step_s / other.step_s
      out[f'train_memory_{name}'] = timing.peak_bytes / other.peak_bytes
  deploy = eval_timings.get(('deploy', '-'))
  if deploy:
    for (conv, impl), timing in eval_timings.items():
      if conv != 'deploy':
        out[f'eval_throughput_deploy/{label(conv, impl)}'] = (
          deploy.images_per_s / timing.images_per_s
        )
  return out


def format_report(report: dict[str, Any]) -> str:
  env = report['environment']
  lines = [
    f'{env["model"]} at {env["image_size"]} px on {env["num_devices"]} x '
    f'{env["device_kind"]} ({env["backend"]}), '
    f'train batch {env["batch_size"]}, eval batch {env["eval_batch_size"]}, '
    f'median of {env["steps"]} steps; XLA_FLAGS={env["xla_flags"] or "(none)"}',
    f'peak (float32 matmul): {report["peak_flops_per_s"] / 1e9:.1f} GFLOP/s',
    '',
    f'{"":6}{"conv":15}{"acb_impl":10}{"dtype":10}{"feed":11}{"img/s":>9}{"step ms":>10}'
    f'{"compile s":>11}{"GFLOP/s":>9}{"of peak":>9}{"peak MB":>9}{"pipeline":>10}',
  ]
  for section in ('train', 'eval'):
    for row in report[section]:
      overhead = row.get('pipeline_overhead')
      lines.append(
        f'{section:6}{row["conv"]:15}{row["acb_impl"]:10}{row["dtype"]:10}'
        f'{row.get("feed", ""):11}{row["images_per_s"]:9.1f}{row["step_s"] * 1e3:10.1f}'
        f'{row["compile_s"]:11.1f}{row["flops_per_s"] / 1e9:9.1f}{row["fraction_of_peak"]:9.1%}'
        f'{row["peak_bytes"] / 2**20:9.1f}{"" if overhead is None else f"{overhead:10.1%}"}'
      )
  if report['breakdown']:
    lines.append('')
  for row in report['breakdown']:
    times = [0.0] + [row[f'{name}_s'] for name in GRADIENT_PARTS]
    flops = [0.0] + [row[f'{name}_flops'] for name in GRADIENT_PARTS]
    parts = [
      f'{label} {(times[i + 1] - times[i]) * 1e3:.0f} ms '
      f'({(flops[i + 1] - flops[i]) / (times[i + 1] - times[i]) / 1e9:.0f} GFLOP/s)'
      for i, label in enumerate(('forward', '+ input grads', '+ weight grads'))
    ]
    lines.append(f'parts {row["conv"]:15}{row["acb_impl"]:10}' + ', '.join(parts))
  if report['devices']:
    lines.append('')
    for row in report['devices']:
      lines.append(
        f'devices {row["num_devices"]:2}  {row["conv"]:15}{row["acb_impl"]:10}'
        f'{row["images_per_s"]:9.1f} img/s'
      )
  lines.append('')
  lines += [f'{name:48}{value:8.3f}' for name, value in report['ratios'].items()]
  if report.get('profile'):
    lines += [
      '',
      'where a train step goes (summed op time per step, from the profiler):',
      format_profile(report['profile']),
    ]
  return '\n'.join(lines)


# The run's settings every row of the report carries.
SETTINGS = (
  'model',
  'image_size',
  'batch_size',
  'eval_batch_size',
  'num_devices',
  'steps',
  'warmup',
  'xla_flags',
)


def report_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
  """The report as flat rows, each with its `section` and the run's settings."""
  rows: list[dict[str, Any]] = [{'section': 'peak', 'flops_per_s': report['peak_flops_per_s']}]
  for section in ('train', 'eval', 'breakdown', 'devices'):
    rows += [{'section': section, **row} for row in report[section]]
  rows += [
    {'section': 'profile', 'label': label, 'kind': kind, 'seconds': seconds}
    for label, kinds in report['profile'].items()
    for kind, seconds in kinds.items()
  ]
  rows += [
    {'section': 'ratio', 'name': name, 'value': value} for name, value in report['ratios'].items()
  ]
  settings = {key: report['environment'][key] for key in SETTINGS}
  return [{**settings, **row} for row in rows]


def profile_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
  """The docs' table of where a train step goes: ms a step of each kind of op
  (rows of section 'profile'), one column per profiled step."""
  labels = list(dict.fromkeys(row['label'] for row in rows))
  ms = {(row['label'], row['kind']): row['seconds'] * 1e3 for row in rows}
  # A kind of op the model has none of (no pooling in a ResNet) is left out.
  shown = [kind for kind in KINDS if any(ms[label, kind] for label in labels)]
  lines = [[kind, *(f'{ms[label, kind]:.1f}' for label in labels)] for kind in shown]
  total = [sum(ms[label, kind] for kind in KINDS) for label in labels]
  lines.append(['the step (traced + untraced)', *(f'{value:.1f}' for value in total)])
  model = rows[0]['model']
  return markdown_table(['ms a step', *(f'{model} {label}' for label in labels)], lines)

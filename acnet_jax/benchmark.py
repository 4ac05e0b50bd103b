"""Numbers, not tests: python -m acnet_jax.benchmark [--model=rc56 --batch_size=64 ...]

After compilation and warm-up, the median time of several steps of
  train    the jitted train step of each conv kind (--convs: `normal`,
           `acnet` in each ACB impl, `dbb`, `repvgg`, and each of those three
           online: `acnet_online`, `dbb_online`, `repvgg_online`), fed by the
           on-device input pipeline (gather, augment, normalise) and by a
           batch already on device;
  eval     the forward pass of each kind (unfused) and of the fused `deploy`
           model;
  devices  the train step on 1 device and on all N, when N > 1;
  parts    (--breakdown) forward, + input gradients, + weight gradients;
with each step's compile time, XLA's FLOP count (per device: the partitioned
program's), the achieved FLOP/s as a fraction of a float32 matmul timed in
the same run, and the step's peak memory as XLA plans it (not timed: the same
on a busy machine). Prints a table, writes it as JSON to --output and
appends its rows to --results_dir/benchmark.jsonl (`benchmarking.results`).
Synthetic uint8 data: the step's work does not depend on pixels.

Instead, `--loop`: the training loop against the bare jitted step; and
`--pipeline --data_dir=FOLDER`: the streaming input path decoding and
augmenting FOLDER/train/<class>/* at each --crop_sizes and --num_workers
(images/s, in total and per host core used: the process's CPU seconds, all its
threads, per wall second; the first batch, which starts the threads, is not
timed), and with --streamed_step a train step fed by it. Their rows go to
loop_overhead.jsonl and decoding.jsonl. `--exported=DIR`: a run's export
folder (`acnet_jax.export --format=stablehlo,onnx-int8`) evaluated under XLA
and under ONNX Runtime in float32 and int8, at each --batch_sizes, interleaved
for --steps rounds: exported.jsonl.
benchmarks/torchvision_pipeline.py measures torchvision the same way.
The measurements live in `acnet_jax.benchmarking`; this module is the command.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import jax
from absl import app, flags

from acnet_jax import xla_cpu
from acnet_jax.benchmarking.exported import format_rows, time_exported
from acnet_jax.benchmarking.loop_overhead import time_loop_overhead
from acnet_jax.benchmarking.pipeline import format_table, time_decoding, time_streamed_training
from acnet_jax.benchmarking.report import format_report, report_rows
from acnet_jax.benchmarking.results import (
  JAX_PACKAGES,
  RESULTS_DIR,
  RESULTS_DIR_HELP,
  append_rows,
  command_line,
  run_context,
)
from acnet_jax.benchmarking.suite import BENCHMARK_CONVS, run_benchmark
from acnet_jax.blocks.acb import ACB_IMPLS
from acnet_jax.errors import InputError

FLAGS = flags.FLAGS
flags.DEFINE_string('model', 'rc56', 'Model name, e.g. rc56, cfqkbnc, wrnc16.')
flags.DEFINE_list(
  'convs',
  ['normal', 'acnet'],
  f'Conv kinds to train, of: {", ".join(BENCHMARK_CONVS)} (<kind>_online: config.online).',
)
flags.DEFINE_list('acb_impls', list(ACB_IMPLS), 'ACB computations to time for acnet.')
flags.DEFINE_integer('batch_size', 64, 'Global train batch size.')
flags.DEFINE_integer('eval_batch_size', 500, 'Global eval batch size.')
flags.DEFINE_integer('num_devices', 0, 'Devices of the mesh; 0 = all of the backend.')
flags.DEFINE_string('backend', None, "jax backend ('cpu', 'gpu', 'tpu'); default: jax's.")
flags.DEFINE_integer('steps', 5, 'Timed steps per measurement (their median is reported).')
flags.DEFINE_integer('warmup', 2, 'Untimed steps after compilation.')
flags.DEFINE_integer(
  'train_examples',
  0,
  'Size of the synthetic train split on device; '
  '0 = 50,000 at 32 px, else enough for the timed steps.',
)
flags.DEFINE_integer(
  'image_size', 32, 'Side of the synthetic images, e.g. 224 for ImageNet models.'
)
flags.DEFINE_list(
  'dtypes',
  ['float32'],
  'Compute dtypes to train and evaluate in: float32, bfloat16 (ratios and devices use the first).',
)
flags.DEFINE_bool(
  'pipeline',
  False,
  'Time the streaming input pipeline on --data_dir instead: decoded and '
  'augmented images/s, in total and per host core, at each --crop_sizes and '
  '--num_workers.',
)
flags.DEFINE_string('data_dir', None, 'With --pipeline: an image folder (train/<class>/*).')
flags.DEFINE_list('crop_sizes', ['224', '64'], 'With --pipeline: crop sizes to decode at.')
flags.DEFINE_list('num_workers', ['1', '2'], 'With --pipeline: decoding threads to try.')
flags.DEFINE_integer(
  'decode_batches', 20, 'With --pipeline: timed batches per decoding measurement.'
)
flags.DEFINE_bool(
  'streamed_step',
  False,
  "With --pipeline: also time --model's train step at --image_size fed by the "
  'stream with the last --num_workers, and the share of it spent waiting for data.',
)
flags.DEFINE_integer(
  'matmul_size',
  0,
  'Side of the square matmul that measures the peak; 0 = 2048 on CPU, 8192 elsewhere.',
)
flags.DEFINE_bool(
  'breakdown',
  False,
  'Also time the forward, input-gradient and weight-gradient parts of each train step.',
)
flags.DEFINE_bool(
  'loop',
  False,
  'Time the training loop against the bare jitted step instead '
  '(--model, --batch_size, --steps of the loop: e.g. --model=rc8 --batch_size=32 '
  '--steps=600).',
)
flags.DEFINE_bool(
  'profile', False, 'Also trace each train step and print where its time goes, per kind of op.'
)
flags.DEFINE_string(
  'output',
  os.path.join(tempfile.gettempdir(), 'acnet_jax_benchmark.json'),
  'Where to write the JSON report.',
)
flags.DEFINE_string(
  'exported',
  None,
  "Time a run's export folder (its WORKDIR/export) under XLA and ONNX Runtime float32 and int8 "
  'instead.',
)
flags.DEFINE_list('batch_sizes', ['1', '256'], 'With --exported: the batch sizes to time.')
flags.DEFINE_string('results_dir', RESULTS_DIR, RESULTS_DIR_HELP)


def record(
  report: Any,
  name: str,
  rows: Sequence[dict[str, Any]],
  devices: Sequence[jax.Device],
  packages: Sequence[str] = JAX_PACKAGES,
) -> None:
  """Writes the JSON report to --output and appends its rows, with this run's
  command, date, machine and versions, to --results_dir/<name>.jsonl."""
  with open(FLAGS.output, 'w') as f:
    json.dump(report, f, indent=1)
  print(f'\nwrote {FLAGS.output}')
  device = f'{len(devices)} x {devices[0].device_kind} ({devices[0].platform})'
  context = run_context(command_line('acnet_jax.benchmark'), device, packages)
  path = append_rows(name, rows, FLAGS.results_dir, context)
  if path:
    print(f'appended {len(rows)} rows to {path}')


def pipeline_main(devices: Sequence[jax.Device]) -> None:
  """--pipeline: decode+augment throughput, then (--streamed_step) a streamed train step."""
  if not FLAGS.data_dir:
    raise app.UsageError('--pipeline needs --data_dir=FOLDER holding train/<class>/*')
  report = {}
  try:
    report['pipeline'] = [
      time_decoding(FLAGS.data_dir, int(size), FLAGS.batch_size, int(workers), FLAGS.decode_batches)
      for size in FLAGS.crop_sizes
      for workers in FLAGS.num_workers
    ]
    print(format_table(report['pipeline']))
    if FLAGS.streamed_step:
      fed = time_streamed_training(
        FLAGS.model,
        FLAGS.data_dir,
        FLAGS.image_size,
        FLAGS.batch_size,
        int(FLAGS.num_workers[-1]),
        devices,
        FLAGS.steps,
        FLAGS.warmup,
      )
      report['streamed_train_step'] = fed
      print(
        f'\n{fed["model"]} normal, train step fed by the stream ({fed["num_workers"]} threads): '
        f'{fed["step_s"] * 1e3:.0f} ms/step, {fed["images_per_s"]:.1f} img/s, waiting for '
        f'data {fed["data_wait_share"]:.1%} of the time'
      )
  except InputError as e:
    raise app.UsageError(str(e)) from None
  rows = [{'measure': 'decoding', **row} for row in report['pipeline']]
  if 'streamed_train_step' in report:
    rows.append({'measure': 'streamed_train_step', **report['streamed_train_step']})
  record(report, 'decoding', rows, devices, (*JAX_PACKAGES, 'grain', 'pillow'))


def exported_main(devices: Sequence[jax.Device]) -> None:
  """--exported: eval throughput of the deployed files, XLA beside ONNX Runtime."""
  try:
    rows = time_exported(
      FLAGS.exported, [int(size) for size in FLAGS.batch_sizes], FLAGS.steps, FLAGS.warmup
    )
  except InputError as e:
    raise app.UsageError(str(e)) from None
  print(format_rows(rows))
  record({'exported': rows}, 'exported', rows, devices, (*JAX_PACKAGES, 'onnxruntime'))


def main(argv: Sequence[str]) -> None:
  del argv
  xla_cpu.use_project_flags()
  devices = jax.devices(FLAGS.backend) if FLAGS.backend else jax.devices()
  if FLAGS.num_devices:
    if FLAGS.num_devices > len(devices):
      raise app.UsageError(
        f'--num_devices={FLAGS.num_devices} but the backend has {len(devices)} devices'
      )
    devices = devices[: FLAGS.num_devices]
  if FLAGS.pipeline:
    return pipeline_main(devices)
  if FLAGS.exported:
    return exported_main(devices)
  if FLAGS.loop:
    result = time_loop_overhead(FLAGS.model, FLAGS.batch_size, FLAGS.steps)
    print(
      f'{result["model"]} batch {result["batch_size"]}: the loop '
      f'{result["loop_steps_per_s"]:.1f} steps/s, the bare step '
      f'{result["bare_steps_per_s"]:.1f} steps/s: the loop adds '
      f'{result["overhead"]:.1%}'
    )
    return record(result, 'loop_overhead', [result], devices)
  matmul_size = FLAGS.matmul_size or (2048 if devices[0].platform == 'cpu' else 8192)
  try:
    report = run_benchmark(
      FLAGS.model,
      FLAGS.convs,
      FLAGS.acb_impls,
      FLAGS.batch_size,
      FLAGS.eval_batch_size,
      devices,
      FLAGS.steps,
      FLAGS.warmup,
      FLAGS.train_examples,
      matmul_size,
      FLAGS.breakdown,
      progress=print,
      image_size=FLAGS.image_size,
      dtypes=FLAGS.dtypes,
      profiled=FLAGS.profile,
    )
  except InputError as e:
    raise app.UsageError(str(e)) from None
  print(format_report(report))
  record(report, 'benchmark', report_rows(report), devices)


if __name__ == '__main__':
  app.run(main)

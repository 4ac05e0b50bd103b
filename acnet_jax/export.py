"""python -m acnet_jax.export --workdir=DIR [--step=N]
    [--format=stablehlo,savedmodel,torchvision,onnx,onnx-int8] [--calibration_images=512]
    [--reduce_range] [--int8_layers]

Fuses a trained run's newest intact checkpoint (or that of --step) and writes
its deploy model into DIR/export/ as files that run without this package
(`acnet_jax.deploy.artifacts`). The run's config.json says which model it is
and what it was trained on.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
from absl import app, flags, logging

from acnet_jax import cli, xla_cpu
from acnet_jax.deploy import artifacts, int8, int8_layers, run_images
from acnet_jax.errors import InputError
from acnet_jax.fusion import fuse_params
from acnet_jax.training import workdir as runs
from acnet_jax.training.write_failures import reported_as_one_paragraph


def evaluated_top1(workdir: str, step: int) -> float | None:
  """The fused model's test top-1 from the run's eval.json, if that evaluated `step`."""
  path = os.path.join(workdir, 'eval.json')
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    report = json.load(f)
  return report.get('fused_top1') if report.get('step') == step else None


def int8_data(
  config: ml_collections.ConfigDict,
  calibration_images: int,
  reduce_range: bool = False,
  per_layer: bool = False,
) -> int8.Int8Data:
  """The run's calibration and test images, read as it read its data."""
  if calibration_images < 1:
    raise InputError(
      f'--calibration_images={calibration_images}: int8 quantization '
      'calibrates on at least one training image (e.g. 512)'
    )
  positions = run_images.calibration_indices(config, calibration_images)
  return int8.Int8Data(
    run_images.training_images(config, positions),
    positions,
    config.seed,
    lambda: run_images.test_batches(config),
    reduce_range,
    per_layer,
  )


def export_run(
  workdir: str,
  step: int | None = None,
  formats: str | tuple[str, ...] = artifacts.DEFAULT_FORMATS,
  image_size: int = 0,
  calibration_images: int = 512,
  reduce_range: bool = False,
  int8_layers: bool = False,
) -> dict[str, Any]:
  """Writes DIR/export/ from the run in `workdir`; returns its model.json's
  content. onnx-int8 calibrates on `calibration_images` of the run's training
  images (weights in 7 bits with `reduce_range`) and evaluates on its test
  images, with `int8_layers` also each layer quantized alone."""
  run = runs.read_run(workdir)
  formats = artifacts.parse_formats(formats, run.config.model)
  if not formats:
    raise InputError(f'no export format given; valid: {", ".join(artifacts.FORMATS)}')
  if (reduce_range or int8_layers) and 'onnx-int8' not in formats:
    raise InputError('--reduce_range and --int8_layers are for --format=onnx-int8')
  image_shape = (image_size, image_size, 3) if image_size else run.input_shape
  if image_shape is None:
    raise InputError(
      f'{workdir}/config.json does not record the input shape the run trained '
      'at (a run from before it was recorded): pass --image_size'
    )
  state = runs.restore_step_or_newest(workdir, run.config, step, image_shape)
  step = int(state.step)
  data = (
    int8_data(run.config, calibration_images, reduce_range, int8_layers)
    if 'onnx-int8' in formats
    else None
  )
  # Jitted: op by op, fusing DenseNet-40 compiles for 20 s on the CPU.
  params, batch_stats = jax.jit(fuse_params)(state.params, state.batch_stats)
  with reported_as_one_paragraph(workdir):
    return artifacts.write_export(
      os.path.join(workdir, artifacts.EXPORT_DIR),
      run.config,
      params,
      batch_stats,
      image_shape,
      step,
      evaluated_top1(workdir, step),
      formats,
      run.class_names,
      data,
    )


def define_flags() -> None:
  """Only when run as a command: importing the module defines no global flags."""
  flags.DEFINE_string('workdir', None, 'The --workdir of a training run.')
  flags.DEFINE_integer('step', None, 'The checkpoint to export; default: the newest intact one.')
  flags.DEFINE_string(
    'format',
    ','.join(artifacts.DEFAULT_FORMATS),
    f'Comma-separated, of: {", ".join(artifacts.FORMATS)} (torchvision: '
    'resnet18/34/50 only; onnx and onnx-int8: the onnx extra; onnx-int8 '
    'writes onnx too).',
  )
  flags.DEFINE_integer(
    'calibration_images',
    512,
    "onnx-int8: how many of the run's training "
    "images calibrate the activation ranges (drawn with the run's seed).",
  )
  flags.DEFINE_bool(
    'reduce_range',
    False,
    'onnx-int8: weights in 7 bits, for x86 CPUs without VNNI, where ONNX '
    "Runtime's 8-bit kernels can saturate (docs/deploy.md).",
  )
  flags.DEFINE_bool(
    'int8_layers',
    False,
    'onnx-int8: also quantize each conv and dense layer alone and write each '
    "one's test top-1 and drop to int8_layers.json: where the int8 drop comes from.",
  )
  flags.DEFINE_integer(
    'image_size',
    0,
    'Input height and width; default: those the run trained at (its config.json records them).',
  )
  flags.mark_flags_as_required(['workdir'])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  xla_cpu.use_project_flags()
  # Warnings (a damaged checkpoint skipped) and errors, without the INFO lines
  # Orbax and TensorFlow log for every restore and save.
  logging.set_verbosity(logging.WARNING)
  args = flags.FLAGS
  try:
    card = export_run(
      args.workdir,
      args.step,
      args.format,
      args.image_size,
      args.calibration_images,
      args.reduce_range,
      args.int8_layers,
    )
  except InputError as error:
    cli.fail(error)
  directory = os.path.join(args.workdir, artifacts.EXPORT_DIR)
  print(
    f'Exported the deploy model of step {card["step"]} to {directory}: '
    f'{", ".join([*card["files"].values(), artifacts.CARD_FILE])}'
    + (f', {int8.REPORT_FILE}' if 'onnx-int8' in card['files'] else '')
    + (f', {int8_layers.LAYERS_FILE}' if args.int8_layers else '')
  )


if __name__ == '__main__':
  define_flags()
  app.run(main)

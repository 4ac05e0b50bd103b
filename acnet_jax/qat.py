"""python -m acnet_jax.qat --workdir=DIR [--step=N] [--epochs=2]
    [--learning_rate=0.001] [--calibration_images=512] [--nofake_int8] [--reduce_range]

Quantization-aware fine-tuning (training/qat.py) of a trained run's fused
model, and how much of int8's cost it wins back. DIR/qat/ holds the
fine-tuned model as `export --format=onnx-int8` writes a run's (model.onnx,
model_int8.onnx, eval_int8.json, model.json) and qat.json: int8 top-1 of the
fused model without and with fine-tuning, each against the run's own float
top-1, on the same calibration and test images (the onnx extra).
`--nofake_int8` fine-tunes alike without the rounding, into DIR/float_tuned/:
the control for what more training alone does. `--reduce_range` rounds and
exports the weights in 7 bits, as `export --reduce_range`, into
DIR/qat_reduce_range/ (DIR/float_tuned_reduce_range/).
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import tempfile
from typing import Any

import jax
import ml_collections
import tqdm
from absl import app, flags, logging

from acnet_jax import cli, export, xla_cpu
from acnet_jax.deploy import artifacts, int8
from acnet_jax.errors import InputError
from acnet_jax.fusion import fuse_params
from acnet_jax.training import trainer
from acnet_jax.training import workdir as runs
from acnet_jax.training.write_failures import reported_as_one_paragraph

QAT_DIR = 'qat'  # In a run's workdir.
CONTROL_DIR = 'float_tuned'  # The same fine-tuning without the rounding.
REPORT_FILE = 'qat.json'
REDUCE_RANGE_SUFFIX = '_reduce_range'  # Of both directories, for 7-bit weights.
PACKAGES = ('qwix', 'jax2onnx', 'onnxruntime')


def check_arguments(epochs: int, learning_rate: float) -> None:
  if not all(importlib.util.find_spec(package) for package in PACKAGES):
    raise InputError(
      f'quantization-aware fine-tuning needs the onnx extra ({", ".join(PACKAGES)}): '
      "pip install -e '.[onnx]'"
    )
  if epochs < 1:
    raise InputError(f'--epochs={epochs}: fine-tuning takes at least one epoch (e.g. 2)')
  if not learning_rate > 0:
    raise InputError(f'--learning_rate={learning_rate}: give a positive rate (e.g. 0.001)')


def output_dir(workdir: str, fake_int8: bool, reduce_range: bool) -> str:
  name = QAT_DIR if fake_int8 else CONTROL_DIR
  return os.path.join(workdir, name + (REDUCE_RANGE_SUFFIX if reduce_range else ''))


def int8_report(
  config: ml_collections.ConfigDict,
  params: Any,
  batch_stats: Any,
  image_shape: tuple[int, int, int],
  data: int8.Int8Data,
) -> dict[str, Any]:
  """eval_int8.json's content for these fused variables, written nowhere."""
  with tempfile.TemporaryDirectory() as directory:
    artifacts.save_onnx(
      artifacts.deploy_logits(config, params, batch_stats),
      image_shape,
      os.path.join(directory, artifacts.ONNX_FILE),
    )
    return int8.quantize_and_evaluate(directory, artifacts.ONNX_FILE, data)


def fine_tuned(
  config: ml_collections.ConfigDict,
  deploy_variables: dict[str, Any],
  fake_int8: bool,
  reduce_range: bool,
  progress: bool,
) -> tuple[Any, int, float]:
  """The fused variables after fine-tuning (config from qat.fine_tune_config),
  the number of steps, and the mean training loss of the last epoch."""
  from acnet_jax.training import qat  # qwix: only with the onnx extra.

  run = trainer.Trainer(config, trainer.create_mesh())  # The run's feed on this mesh.
  updates = qat.fine_tune(
    config, run.deploy_model, deploy_variables, run.feed, run.sharder, fake_int8, reduce_range
  )
  bar = tqdm.tqdm(
    updates,
    total=run.total_steps,
    desc='int8-aware fine-tuning' if fake_int8 else 'float fine-tuning',
    unit='step',
    disable=not progress,
    dynamic_ncols=True,
  )
  last_epoch = collections.deque(maxlen=run.steps_per_epoch)
  for index, (state, metrics) in enumerate(bar):
    last_epoch.append(metrics['loss'])
    if index % 10 == 0:
      bar.set_postfix(loss=f'{float(metrics["loss"]):.4f}')
  mean_loss = sum(float(loss) for loss in last_epoch) / len(last_epoch)
  return trainer.to_host(state.params), run.total_steps, mean_loss


def qat_run(
  workdir: str,
  step: int | None = None,
  epochs: int = 2,
  learning_rate: float = 1e-3,
  calibration_images: int = 512,
  fake_int8: bool = True,
  reduce_range: bool = False,
  progress: bool = False,
) -> dict[str, Any]:
  """Writes DIR/qat/ (DIR/float_tuned/ without `fake_int8`; with the suffix
  `_reduce_range` for 7-bit weights) and returns qat.json's content."""
  from acnet_jax.training import qat

  check_arguments(epochs, learning_rate)
  run = runs.read_run(workdir)
  if run.input_shape is None:
    raise InputError(f'{workdir}/config.json does not record the input shape the run trained at')
  state = runs.restore_step_or_newest(workdir, run.config, step, run.input_shape)
  data = export.int8_data(run.config, calibration_images, reduce_range)
  params, batch_stats = jax.jit(fuse_params)(state.params, state.batch_stats)
  config = qat.fine_tune_config(run.config, epochs, learning_rate)
  with reported_as_one_paragraph(workdir):
    before = int8_report(run.config, params, batch_stats, run.input_shape, data)
    tuned, num_steps, final_loss = fine_tuned(
      config, {'params': params, 'batch_stats': batch_stats}, fake_int8, reduce_range, progress
    )
    directory = output_dir(workdir, fake_int8, reduce_range)
    artifacts.write_export(
      directory,
      run.config,
      tuned,
      batch_stats,
      run.input_shape,
      int(state.step),
      None,
      ('onnx', 'onnx-int8'),
      run.class_names,
      data,
    )
    with open(os.path.join(directory, int8.REPORT_FILE)) as f:
      after = json.load(f)
    report = {
      'step': int(state.step),
      'float_top1': before['float_top1'],
      'int8_top1': before['int8_top1'],
      'drop': before['float_top1'] - before['int8_top1'],
      'reference_int8_top1': before['reference_int8_top1'],
      'reference_drop': before['float_top1'] - before['reference_int8_top1'],
      'fine_tuned_float_top1': after['float_top1'],
      'fine_tuned_int8_top1': after['int8_top1'],
      # Against the float model the run had: what shipping the fine-tuned int8 costs.
      'fine_tuned_drop': before['float_top1'] - after['int8_top1'],
      'fine_tuned_reference_int8_top1': after['reference_int8_top1'],
      'fine_tuned_reference_drop': before['float_top1'] - after['reference_int8_top1'],
      'reference_arithmetic': after['reference_arithmetic'],
      'fine_tuning': {
        'fake_int8': fake_int8,
        'epochs': epochs,
        'steps': num_steps,
        'learning_rate': learning_rate,
        'schedule': 'cosine to 0, no warmup',
        'batch_size': config.batch_size,
        'final_epoch_loss': final_loss,
        'rounding': qat.rounding(reduce_range) if fake_int8 else None,
        'reduce_range': reduce_range,
        'qwix_version': qat.qwix.__version__,
      },
      'calibration': after['calibration'],
      'num_test_images': after['num_test_images'],
    }
    partial = os.path.join(directory, f'{REPORT_FILE}.partial')
    with open(partial, 'w') as f:
      json.dump(report, f, indent=2)
    os.replace(partial, os.path.join(directory, REPORT_FILE))
  return report


def define_flags() -> None:
  """Only when run as a command: importing the module defines no global flags."""
  flags.DEFINE_string('workdir', None, 'The --workdir of a training run.')
  flags.DEFINE_integer('step', None, 'The checkpoint to fine-tune; default: the newest intact one.')
  flags.DEFINE_integer('epochs', 2, "Epochs of fine-tuning, over the run's training data.")
  flags.DEFINE_float('learning_rate', 1e-3, 'Start of the cosine schedule (to 0).')
  flags.DEFINE_integer(
    'calibration_images',
    512,
    "How many of the run's training images calibrate the int8 activation ranges.",
  )
  flags.DEFINE_bool(
    'fake_int8',
    True,
    'Round as int8 while fine-tuning; --nofake_int8 fine-tunes without, into '
    f'DIR/{CONTROL_DIR}/ (the control).',
  )
  flags.DEFINE_bool(
    'reduce_range',
    False,
    'Round and quantize the weights in 7 bits, as export --reduce_range, into '
    f'DIR/{QAT_DIR}{REDUCE_RANGE_SUFFIX}/ (DIR/{CONTROL_DIR}{REDUCE_RANGE_SUFFIX}/).',
  )
  flags.mark_flags_as_required(['workdir'])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  xla_cpu.use_project_flags()
  logging.set_verbosity(logging.WARNING)
  args = flags.FLAGS
  try:
    report = qat_run(
      args.workdir,
      args.step,
      args.epochs,
      args.learning_rate,
      args.calibration_images,
      args.fake_int8,
      args.reduce_range,
      progress=True,
    )
  except InputError as error:
    cli.fail(error)
  print(
    f'int8 top-1 {report["int8_top1"]:.4f} without and '
    f'{report["fine_tuned_int8_top1"]:.4f} with fine-tuning (float '
    f'{report["float_top1"]:.4f}): '
    f'{os.path.join(output_dir(args.workdir, args.fake_int8, args.reduce_range), REPORT_FILE)}'
  )


if __name__ == '__main__':
  define_flags()
  app.run(main)

"""python -m acnet_jax.export --workdir=DIR [--step=N] [--format=stablehlo,savedmodel]

Fuses a trained run's newest intact checkpoint (or that of --step) and writes
its deploy model into DIR/export/ as files that run without this package
(`acnet_jax.artifacts`). The run's own config.json says which model it is.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
from absl import app, flags, logging

from acnet_jax import (
  artifacts,
  checkpointing,
  cli,
  feeds,
  optim,
  presets,
  streaming,
  train,
)
from acnet_jax.errors import InputError
from acnet_jax.fusion import fuse_params

# Data sets the input pipeline holds in memory, at the size they are stored at.
STORED_32_PX = ('cifar10', 'cifar100', 'synthetic')


def input_shape(config: ml_collections.ConfigDict, image_size: int = 0) -> tuple[int, int, int]:
  """(height, width, channels) of the images the run trained on, as its input
  pipeline chose (`feeds.create_feed`): `image_size` if given; the crop size
  where it streamed; else the size its data set is stored at."""
  if image_size:
    return image_size, image_size, 3
  if config.dataset in STORED_32_PX and config.pipeline != 'stream':
    return 32, 32, 3
  if config.dataset != 'image_folder' or config.pipeline == 'stream':
    return config.image_size, config.image_size, 3
  # An image folder: held in memory at its images' size if it fitted, else streamed.
  try:
    if feeds.choose_pipeline(config) == 'stream':
      return config.image_size, config.image_size, 3
    width, height = feeds.header_size(streaming.ImageFolderSource(config.data_dir, 'train').name(0))
  except (InputError, OSError, TypeError):  # No folder, or no readable image in it.
    raise InputError(f'the run trained on the image folder {config.data_dir!r}, held in memory '
                     'or streamed depending on its images, and they are not there to say which '
                     'size it trained at: pass --image_size') from None
  return height, width, 3


def abstract_train_state(config: ml_collections.ConfigDict,
                         image_shape: tuple[int, int, int]) -> train.TrainState:
  """Shapes and dtypes of the run's train state, to restore into; nothing is
  computed. The schedule does not shape the optimizer state, so any will do."""
  optimizer = optim.create_optimizer(config, optim.create_lr_schedule(config, steps_per_epoch=1))
  model = train.create_model(config)
  return jax.eval_shape(lambda: train.create_train_state(config, model, optimizer, image_shape))


def restore_state(workdir: str, config: ml_collections.ConfigDict, step: int | None,
                  image_shape: tuple[int, int, int]) -> train.TrainState:
  """The state of `step`, or the newest intact one."""
  manager = train.trained_checkpoints(config, workdir)
  steps, directory = manager.all_steps(), manager.directory
  abstract = abstract_train_state(config, image_shape)
  if step is None:
    state, _ = checkpointing.restore_newest(manager, abstract, config)
    return state
  if step not in steps:
    raise InputError(f'no checkpoint of step {step} in {directory}; it has steps '
                     f'{", ".join(map(str, sorted(steps)))}')
  try:
    return checkpointing.restore_step(manager, step, abstract, config)
  except checkpointing.DamagedCheckpoint as error:
    raise InputError(f'the checkpoint of step {step} does not read back intact: {error}') from None


def evaluated_top1(workdir: str, step: int) -> float | None:
  """The fused model's test top-1 from the run's eval.json, if that evaluated `step`."""
  path = os.path.join(workdir, 'eval.json')
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    report = json.load(f)
  return report.get('fused_top1') if report.get('step') == step else None


def export_run(workdir: str, step: int | None = None,
               formats: str | tuple[str, ...] = artifacts.FORMATS,
               image_size: int = 0) -> dict[str, Any]:
  """Writes DIR/export/ from the run in `workdir`; returns its model.json's content."""
  formats = artifacts.parse_formats(formats)
  if not formats:
    raise InputError(f'no export format given; valid: {", ".join(artifacts.FORMATS)}')
  config = presets.run_config(workdir)
  image_shape = input_shape(config, image_size)
  state = restore_state(workdir, config, step, image_shape)
  step = int(state.step)
  # Jitted: op by op, fusing DenseNet-40 compiles for 20 s on the CPU.
  params, batch_stats = jax.jit(fuse_params)(state.params, state.batch_stats)
  return artifacts.write_export(
      os.path.join(workdir, artifacts.EXPORT_DIR), config, params, batch_stats, image_shape, step,
      evaluated_top1(workdir, step), formats)


def define_flags() -> None:
  """Only when run as a command: importing the module defines no global flags."""
  flags.DEFINE_string('workdir', None, 'The --workdir of a training run.')
  flags.DEFINE_integer('step', None, 'The checkpoint to export; default: the newest intact one.')
  flags.DEFINE_string('format', ','.join(artifacts.FORMATS),
                      f'Comma-separated, of: {", ".join(artifacts.FORMATS)}.')
  flags.DEFINE_integer('image_size', 0, 'Input height and width; default: those the run '
                       'trained at. Needed only for an image folder held in memory that is gone.')
  flags.mark_flags_as_required(['workdir'])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  # Warnings (a damaged checkpoint skipped) and errors, without the INFO lines
  # Orbax and TensorFlow log for every restore and save.
  logging.set_verbosity(logging.WARNING)
  args = flags.FLAGS
  try:
    card = export_run(args.workdir, args.step, args.format, args.image_size)
  except InputError as error:
    cli.fail(error)
  directory = os.path.join(args.workdir, artifacts.EXPORT_DIR)
  print(f"Exported the deploy model of step {card['step']} to {directory}: "
        f"{', '.join([*card['files'].values(), artifacts.CARD_FILE])}")


if __name__ == '__main__':
  define_flags()
  app.run(main)

"""A run's workdir: what training records there for later commands, and how
they find and restore its checkpoints.

    config.json      the config the run used, and under "recorded" what it
                     learned of its data: the input shape and the class names
    checkpoints/     Orbax checkpoints of the train state (`checkpointing`)
    deploy/<step>/   the fused deploy variables
    eval.json, metrics.jsonl, tensorboard/, export/
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
import orbax.checkpoint as ocp

from acnet_jax.errors import InputError
from acnet_jax.training import checkpointing, restoring
from acnet_jax.training.config import get_config
from acnet_jax.training.trainer import abstract_train_state

CONFIG_FILE = 'config.json'
RECORDED = 'recorded'  # The key of config.json that holds what the run learned of its data.


@dataclasses.dataclass(frozen=True)
class RunRecord:
  """A run's config.json: its config, and the input shape and class names of
  its data (None for runs that predate recording them)."""

  config: ml_collections.ConfigDict
  input_shape: tuple[int, int, int] | None
  class_names: tuple[str, ...] | None


def check_workdir(workdir: str) -> None:
  """Stops before any work if checkpoints could not be written there."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise InputError(
      f'--workdir {workdir} is a file, not a folder: name a folder (new or a '
      'previous run of this config)'
    )
  parent = os.path.dirname(os.path.abspath(workdir))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
    raise InputError(f'--workdir {workdir} cannot be created: {parent} is not a writable folder')


def write_run_config(
  workdir: str,
  config: ml_collections.ConfigDict,
  input_shape: Sequence[int],
  class_names: Sequence[str],
) -> None:
  os.makedirs(workdir, exist_ok=True)
  recorded = {'input_shape': list(input_shape), 'class_names': list(class_names)}
  with open(os.path.join(workdir, CONFIG_FILE), 'w') as f:
    json.dump({**config.to_dict(), RECORDED: recorded}, f, indent=2)


def read_run(workdir: str) -> RunRecord:
  """The config a training run used (its config.json), on top of today's
  defaults, so that runs from before a key existed load too."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isfile(path):
    raise InputError(
      f'{workdir} is not the --workdir of a training run: it has no '
      f'{CONFIG_FILE} (python -m acnet_jax.main --mode=train writes one there)'
    )
  try:
    with open(path) as f:
      saved = json.load(f)
  except json.JSONDecodeError as error:
    raise InputError(f'{path} is not the JSON a training run writes: {error}') from None
  recorded = saved.pop(RECORDED, {})
  config = get_config()
  merge(config, saved)
  shape, names = recorded.get('input_shape'), recorded.get('class_names')
  return RunRecord(config, tuple(shape) if shape else None, tuple(names) if names else None)


def run_config(workdir: str) -> ml_collections.ConfigDict:
  return read_run(workdir).config


# What evaluating a run needs to read its test split as it did.
EVAL_DATA_KEYS = (
  'dataset',
  'data_dir',
  'pipeline',
  'image_size',
  'eval_split',
  'num_classes',
  'pixel_mean',
  'pixel_std',
  'synthetic_examples',
  'seed',
)


def with_recorded_data(
  config: ml_collections.ConfigDict, workdir: str, given: frozenset[str]
) -> ml_collections.ConfigDict:
  """`config` with the data keys the run in `workdir` recorded, except those
  `given` on the command line: an evaluation reads the data the run trained
  on, not the preset's default (a download, for an image-folder run)."""
  if not os.path.isfile(os.path.join(workdir, CONFIG_FILE)):
    return config
  recorded = read_run(workdir).config
  config = config.copy_and_resolve_references()
  with config.unlocked():
    for key in EVAL_DATA_KEYS:
      if key not in given:
        config[key] = recorded[key]
  return config


def merge(config: ml_collections.ConfigDict, saved: dict[str, Any]) -> None:
  for key, value in saved.items():
    if isinstance(value, dict) and isinstance(config.get(key), ml_collections.ConfigDict):
      merge(config[key], value)
    else:  # JSON has no tuples; the config's sequences are tuples.
      config[key] = tuple(value) if isinstance(value, list) else value


def trained_checkpoints(config: ml_collections.ConfigDict, workdir: str) -> ocp.CheckpointManager:
  """The checkpoints of a trained run; InputError if workdir holds none."""
  directory = os.path.join(workdir, 'checkpoints')
  manager = (
    checkpointing.checkpoint_manager(workdir, config.keep_checkpoints)
    if os.path.isdir(directory)
    else None
  )
  if manager is None or not manager.all_steps():
    raise InputError(
      f'no checkpoint in {directory}: train first (--mode=train) or point '
      '--workdir at a trained run'
    )
  return manager


def restore_trained(
  manager: ocp.CheckpointManager, abstract_state: Any, config: ml_collections.ConfigDict
) -> Any:
  """The newest intact checkpoint (damaged newer ones are skipped, not moved),
  restored into the shapes, dtypes and shardings of `abstract_state`."""
  with contextlib.closing(manager):
    state, _ = restoring.restore_newest(manager, abstract_state, config)
  return state


def restore_or_initialize(
  manager: ocp.CheckpointManager,
  abstract_state: Any,
  initialize: Callable[[], Any],
  config: ml_collections.ConfigDict,
) -> tuple[Any, bool]:
  """(the newest intact checkpoint (damaged newer ones set aside), True), or
  (`initialize()`, False) where there is none: a resume computes no initial state."""
  state, damaged = restoring.restore_newest(manager, abstract_state, config)
  restoring.set_aside(manager, damaged)
  return (initialize(), False) if state is None else (state, True)


def restore_step_or_newest(
  workdir: str, config: ml_collections.ConfigDict, step: int | None, image_shape: tuple[int, ...]
) -> Any:
  """The train state of checkpoint `step`, or of the newest intact one, restored
  into the run's shapes without initialising a model."""
  manager = trained_checkpoints(config, workdir)
  abstract = abstract_train_state(config, image_shape)
  with contextlib.closing(manager):
    if step is None:
      return restoring.restore_newest(manager, abstract, config)[0]
    if step not in manager.all_steps():
      raise InputError(
        f'no checkpoint of step {step} in {manager.directory}; it has steps '
        f'{", ".join(map(str, sorted(manager.all_steps())))}'
      )
    try:
      return restoring.read_with_retries(str(manager.directory), step, abstract, config)
    except checkpointing.DamagedCheckpoint as error:
      raise InputError(
        f'the checkpoint of step {step} does not read back intact: {error}'
      ) from None

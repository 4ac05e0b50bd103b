"""Orbax checkpoints of the train state: save with a fingerprint of the values,
restore the newest checkpoint that reads back intact.

A checkpoint holds three items: `state` (the TrainState), `config` (the
config of the run, JSON) and `fingerprint` (per leaf, the wrapping uint32 sum
of the value bits). Orbax detects a damaged file only where it cannot parse
it; bytes flipped inside an array's data read back silently, so the values
are checked against the fingerprint taken when they were saved.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from acnet_jax.errors import InputError

# What must match between a checkpoint and the config that restores it, and
# what a checkpoint saved before the key existed had.
IDENTITY_KEYS = {'model': None, 'conv': None, 'num_classes': None, 'online': False}
DAMAGED_DIR = 'damaged_checkpoints'


def checkpoint_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           # Leftovers of a save killed midway.
                                           cleanup_tmp_directories=True))


@jax.jit
def fingerprint(tree: Any) -> list[jax.Array]:
  """Per leaf, the sum of its values' bits as uint32, wrapping: any changed
  bit changes it (unless errors cancel exactly), and it is exact, so it is
  the same wherever it is computed."""
  def bits(leaf: jax.Array) -> jax.Array:
    unsigned = {1: jnp.uint8, 2: jnp.uint16}.get(leaf.dtype.itemsize, jnp.uint32)
    words = jax.lax.bitcast_convert_type(leaf, unsigned)  # 8-byte leaves: two words each.
    return jnp.sum(words.astype(jnp.uint32), dtype=jnp.uint32)
  return [bits(leaf) for leaf in jax.tree.leaves(tree)]


def host_fingerprint(tree: Any) -> list[int]:
  return [int(np.asarray(x.addressable_data(0))) for x in fingerprint(tree)]


def save_checkpoint(manager: ocp.CheckpointManager, state: Any,
                    config: ml_collections.ConfigDict) -> None:
  manager.save(int(state.step), args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config.to_dict()),
      fingerprint=ocp.args.JsonSave(host_fingerprint(state))))


class DamagedCheckpoint(Exception):
  """A checkpoint that does not read back as it was saved."""


def check_identity(saved: dict, config: ml_collections.ConfigDict, step: int,
                   directory: str) -> None:
  for key, before_the_key in IDENTITY_KEYS.items():
    if saved.get(key, before_the_key) != config[key]:
      raise InputError(
          f'the checkpoint of step {step} in {directory} is of '
          f'{key}={saved.get(key, before_the_key)!r} but this config has {key}={config[key]!r}: '
          'use another workdir or config')


def restore_step(manager: ocp.CheckpointManager, step: int, abstract_state: Any,
                 config: ml_collections.ConfigDict) -> Any:
  """The state saved at `step`; InputError if it is another model's,
  DamagedCheckpoint if it does not read back intact."""
  path = os.path.join(str(manager.directory), str(step))
  try:
    saved = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
  except Exception as error:  # Orbax and tensorstore raise many kinds on bad bytes.
    raise DamagedCheckpoint(f'{path}: its config does not read ({error})') from error
  check_identity(saved['config'], config, step, str(manager.directory))
  try:
    state = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))['state']
    # Checkpoints written before fingerprints were saved have none to check.
    has_fingerprint = os.path.isdir(os.path.join(path, 'fingerprint'))
    expected = manager.restore(step, args=ocp.args.Composite(
        fingerprint=ocp.args.JsonRestore()))['fingerprint'] if has_fingerprint else None
  except Exception as error:
    raise DamagedCheckpoint(f'{path}: its train state does not read ({error})') from error
  if expected is not None and host_fingerprint(state) != expected:
    raise DamagedCheckpoint(f'{path}: its values differ from those that were saved '
                            '(fingerprint mismatch)')
  return state


def restore_newest(manager: ocp.CheckpointManager, abstract_state: Any,
                   config: ml_collections.ConfigDict) -> tuple[Any | None, list[int]]:
  """(the newest intact state or None if there is no checkpoint, the steps of
  the damaged checkpoints newer than it). Warns about each damaged one;
  InputError if there are checkpoints but none is intact."""
  damaged: list[int] = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      state = restore_step(manager, step, abstract_state, config)
    except DamagedCheckpoint as error:
      logging.warning('Checkpoint of step %d is damaged and was skipped: %s', step, error)
      damaged.append(step)
      continue
    logging.info('Restored the checkpoint of step %d.', step)
    return state, damaged
  if damaged:
    raise InputError(
        f'no checkpoint in {manager.directory} reads back intact (damaged: steps '
        f'{", ".join(map(str, damaged))}; see the warnings above). They are left as they are; '
        'move them away to train from scratch, or restore them from a copy.')
  return None, []


def set_aside(manager: ocp.CheckpointManager, steps: list[int]) -> None:
  """Moves damaged checkpoints to <workdir>/damaged_checkpoints/, for
  inspection; a newer damaged step left in place would stop Orbax from
  saving the older steps that training now repeats."""
  if not steps:
    return
  target = os.path.join(os.path.dirname(str(manager.directory)), DAMAGED_DIR)
  if jax.process_index() == 0:
    os.makedirs(target, exist_ok=True)
    for step in steps:
      destination = os.path.join(target, str(step))
      suffix = 1
      while os.path.exists(destination):  # Never overwrite an earlier one.
        destination = os.path.join(target, f'{step}.{suffix}')
        suffix += 1
      shutil.move(os.path.join(str(manager.directory), str(step)), destination)
      logging.warning('Moved the damaged checkpoint of step %d to %s.', step, destination)
  multihost_utils.sync_global_devices('set aside damaged checkpoints')
  manager.reload()


def save_deploy_variables(workdir: str, step: int, params: Any, batch_stats: Any) -> str:
  """The fused deploy variables as an Orbax checkpoint of their own, deploy/<step>."""
  path = os.path.join(os.path.abspath(workdir), 'deploy', str(step))
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(path, {'params': params, 'batch_stats': batch_stats}, force=True)
  checkpointer.wait_until_finished()
  logging.info('Saved the fused deploy variables to %s', path)
  return path

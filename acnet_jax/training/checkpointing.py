"""Orbax checkpoints of the train state: save one with a fingerprint of its
values, read one back and tell damage from a fault (`restoring` picks which).

A checkpoint holds three items: `state` (the TrainState), `config` (the
config of the run, JSON) and `fingerprint` (per leaf, the wrapping uint32 sum
of the value bits). Orbax detects a damaged file only where it cannot parse
it; bytes flipped inside an array's data read back silently, so the values
are checked against the fingerprint taken when they were saved. A
checkpoint without one of the three items is damaged.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from acnet_jax.errors import InputError
from acnet_jax.training import read_errors

# What must match between a checkpoint and the config that restores it, and
# what a checkpoint saved before the key existed had.
IDENTITY_KEYS = {'model': None, 'conv': None, 'num_classes': None, 'online': False}
DAMAGED_DIR = 'damaged_checkpoints'
ITEMS = ('state', 'config', 'fingerprint')


def checkpoint_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
    os.path.join(os.path.abspath(workdir), 'checkpoints'),
    options=ocp.CheckpointManagerOptions(
      max_to_keep=keep,
      create=True,
      # Leftovers of a save killed midway.
      cleanup_tmp_directories=True,
    ),
  )


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
  """The fingerprint of this process's copy of a replicated tree: a process
  computes it alone, so one whose read failed stalls no other."""
  local = jax.tree.map(lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x, tree)
  return [int(np.asarray(x)) for x in fingerprint(local)]


def save_checkpoint(
  manager: ocp.CheckpointManager, state: Any, config: ml_collections.ConfigDict
) -> None:
  manager.save(
    int(state.step),
    args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      config=ocp.args.JsonSave(config.to_dict()),
      fingerprint=ocp.args.JsonSave(host_fingerprint(state)),
    ),
  )


class DamagedCheckpoint(Exception):
  """A checkpoint whose bytes are wrong (`read_errors.shows_damage`, a missing
  item, a fingerprint mismatch): a resume may set it aside."""


class UnreadableCheckpoint(InputError):
  """A checkpoint this machine could not read for a reason other than its
  bytes (an I/O error, no memory, another shape or sharding): the run stops
  and nothing is moved."""


def check_identity(
  saved: dict, config: ml_collections.ConfigDict, step: int, directory: str
) -> None:
  for key, before_the_key in IDENTITY_KEYS.items():
    if saved.get(key, before_the_key) != config[key]:
      raise InputError(
        f'the checkpoint of step {step} in {directory} is of '
        f'{key}={saved.get(key, before_the_key)!r} but this config has {key}={config[key]!r}: '
        'use another workdir or config'
      )


def local_reader() -> ocp.Checkpointer:
  """Reads in this process alone. Orbax's own restore ends in a barrier of all
  processes, which a process whose read failed would never reach; the
  processes agree on what they read afterwards (`restoring`)."""
  me = jax.process_index()
  return ocp.Checkpointer(
    ocp.CompositeCheckpointHandler(),
    multiprocessing_options=ocp.options.MultiprocessingOptions(
      primary_host=me, active_processes={me}
    ),
  )


def is_missing(path: str) -> bool:
  """Unlike os.path.isdir, an I/O error while looking is raised, not taken
  for a missing item."""
  try:
    os.stat(path)
  except FileNotFoundError:
    return True
  return False


def read_checkpoint(
  directory: str, step: int, abstract_state: Any, config: ml_collections.ConfigDict
) -> Any:
  """The state saved at `step`, read once. InputError if it is another
  model's, DamagedCheckpoint if its bytes are wrong, UnreadableCheckpoint if
  reading it failed otherwise."""
  path = os.path.join(directory, str(step))
  try:
    missing = [item for item in ITEMS if is_missing(os.path.join(path, item))]
    if missing:
      raise DamagedCheckpoint(f'{path}: its {" and ".join(missing)} item is missing')
    reader = local_reader()
    saved = reader.restore(path, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    check_identity(saved['config'], config, step, directory)
    restored = reader.restore(
      path,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), fingerprint=ocp.args.JsonRestore()
      ),
    )
  except (DamagedCheckpoint, InputError):
    raise
  except Exception as error:  # Orbax and tensorstore raise many kinds: told apart here.
    if read_errors.shows_damage(error):
      raise DamagedCheckpoint(f'{path}: {read_errors.summary(error)}') from error
    raise UnreadableCheckpoint(
      f'cannot read the checkpoint of step {step} in {directory}: '
      f'{read_errors.summary(error)}. Nothing was moved or deleted: once the machine reads '
      'it again (the disk, the mount, free memory; or the config that wrote it), run the '
      'same command again.'
    ) from error
  if host_fingerprint(restored['state']) != restored['fingerprint']:
    raise DamagedCheckpoint(
      f'{path}: its values differ from those that were saved (fingerprint mismatch)'
    )
  return restored['state']


def save_deploy_variables(workdir: str, step: int, params: Any, batch_stats: Any) -> str:
  """The fused deploy variables as an Orbax checkpoint of their own, deploy/<step>."""
  path = os.path.join(os.path.abspath(workdir), 'deploy', str(step))
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(path, {'params': params, 'batch_stats': batch_stats}, force=True)
  checkpointer.wait_until_finished()
  logging.info('Saved the fused deploy variables to %s', path)
  return path

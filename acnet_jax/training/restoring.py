"""Which checkpoint a run restores: the newest that reads back intact on every
process, decided once for all of them.

Each process reads a candidate alone (`checkpointing.read_checkpoint`), with
a few tries where an OS error may pass, and reports what it found; all take
the worst report. One process that finds a checkpoint damaged makes it
damaged for all (they go on to an older one together); one that cannot read
it stops them all, moving nothing: a fault of one machine says nothing about
the checkpoint.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from acnet_jax.errors import InputError
from acnet_jax.training import checkpointing, read_errors
from acnet_jax.training.checkpointing import DamagedCheckpoint, UnreadableCheckpoint

# A transient OS error (a busy disk, a network file system) is tried again
# after 0.5 s, then 1 s: a fault that outlasts that stops the run.
TRIES = 3
FIRST_WAIT_S = 0.5
# What each process reports for a candidate step, in rising order of weight.
INTACT, DAMAGED, REFUSED = 0, 1, 2


def read_with_retries(
  directory: str, step: int, abstract_state: Any, config: ml_collections.ConfigDict
) -> Any:
  """`read_checkpoint`, tried again after a transient OS error."""
  for attempt in range(TRIES - 1):
    try:
      return checkpointing.read_checkpoint(directory, step, abstract_state, config)
    except UnreadableCheckpoint as fault:
      if not read_errors.is_transient(fault.__cause__):
        raise
      wait_s = FIRST_WAIT_S * 2**attempt
      logging.warning(
        'Reading the checkpoint of step %d failed (%s); trying again in %.1f s.',
        step,
        read_errors.summary(fault.__cause__),
        wait_s,
      )
      time.sleep(wait_s)
  return checkpointing.read_checkpoint(directory, step, abstract_state, config)


def gather(report: int) -> np.ndarray:
  """Every process's report, in process order."""
  if jax.process_count() == 1:
    return np.array([report])
  return np.asarray(multihost_utils.process_allgather(np.int32(report))).reshape(-1)


def restore_newest(
  manager: ocp.CheckpointManager, abstract_state: Any, config: ml_collections.ConfigDict
) -> tuple[Any | None, list[int]]:
  """(the newest state every process reads intact, or None if there is no
  checkpoint; the steps of the damaged checkpoints newer than it). Warns
  about each damaged one. InputError if a checkpoint is another model's or
  none is intact, UnreadableCheckpoint if a process could not read one."""
  directory = str(manager.directory)
  damaged: list[int] = []
  for step in sorted(manager.all_steps(), reverse=True):
    state, mine, problem = None, INTACT, None
    try:
      state = read_with_retries(directory, step, abstract_state, config)
    except DamagedCheckpoint as error:
      mine, problem = DAMAGED, error
    except InputError as error:  # Another model's, or unreadable here.
      mine, problem = REFUSED, error
    reports = gather(mine)
    worst = int(reports.max())
    if worst == REFUSED:
      if mine == REFUSED:
        raise problem
      raise UnreadableCheckpoint(
        f'process {int(np.argmax(reports))} could not use the checkpoint of step {step} in '
        f'{directory} (its log says why). Nothing was moved or deleted.'
      )
    if worst == DAMAGED:
      why = problem if mine == DAMAGED else f'process {int(np.argmax(reports))} reads it so'
      logging.warning('Checkpoint of step %d is damaged and was skipped: %s', step, why)
      damaged.append(step)
      continue
    logging.info('Restored the checkpoint of step %d.', step)
    return state, damaged
  if damaged:
    raise InputError(
      f'no checkpoint in {directory} reads back intact (damaged: steps '
      f'{", ".join(map(str, damaged))}; see the warnings above). They are left as they are; '
      'move them away to train from scratch, or restore them from a copy.'
    )
  return None, []


def set_aside(manager: ocp.CheckpointManager, steps: list[int]) -> None:
  """Moves damaged checkpoints to <workdir>/damaged_checkpoints/, for
  inspection; a newer damaged step left in place would stop Orbax from
  saving the older steps that training now repeats. Process 0 moves them;
  where it cannot, every process stops (none waits for the others)."""
  if not steps:
    return
  failure: OSError | None = None
  if jax.process_index() == 0:
    try:
      move_aside(str(manager.directory), steps)
    except OSError as error:
      failure = error
  if jax.process_count() > 1:
    moved = bool(multihost_utils.broadcast_one_to_all(np.int32(failure is None)))
    if not moved and failure is None:
      raise InputError(
        f'process 0 could not move the damaged checkpoints of {manager.directory} '
        'aside (its log says why); run the same command again once it can.'
      )
  if failure is not None:
    raise failure
  manager.reload()


def move_aside(directory: str, steps: list[int]) -> None:
  target = os.path.join(os.path.dirname(directory), checkpointing.DAMAGED_DIR)
  os.makedirs(target, exist_ok=True)
  for step in steps:
    destination = os.path.join(target, str(step))
    suffix = 1
    while os.path.exists(destination):  # Never overwrite an earlier one.
      destination = os.path.join(target, f'{step}.{suffix}')
      suffix += 1
    shutil.move(os.path.join(directory, str(step)), destination)
    logging.warning('Moved the damaged checkpoint of step %d to %s.', step, destination)

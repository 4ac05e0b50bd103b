"""Restoring a run whose checkpoints meet a fault or damage, in process (faults
injected into Orbax's reads): a fault moves nothing and stops the run, or
passes on a second try; damage sets the checkpoint aside; a refusal comes
before anything in the workdir changes."""

from __future__ import annotations

import errno
import os
import shutil

import jax
import orbax.checkpoint as ocp
import pytest

from acnet_jax.errors import InputError
from acnet_jax.training import checkpointing, loop, restoring
from acnet_jax.training import workdir as runs
from acnet_jax.training.checkpointing import UnreadableCheckpoint
from acnet_jax.training.lock import LOCK_FILE
from acnet_jax.training.trainer import abstract_train_state
from tests.conftest import TINY_RUN, TINY_RUN_STEPS
from tests.support.runs import tiny_config

CONFIG = tiny_config(**TINY_RUN)
NEWEST = TINY_RUN_STEPS  # The tiny run has checkpoints of steps 2 and 4.


def files(workdir) -> dict:
  """Every file and its modification time (the lock file names its last holder)."""
  return {p: p.stat().st_mtime_ns for p in workdir.rglob('*') if p.name != LOCK_FILE}


def inject(monkeypatch, error: BaseException, step: int, times: int | None = None) -> list[int]:
  """Orbax's reads of checkpoint `step` raise `error`, the first `times` times
  (always if None); returns the list the failed tries are counted in."""
  restore = ocp.Checkpointer.restore
  failed: list[int] = []

  def failing(self, directory, *args, **kwargs):
    if os.path.basename(str(directory)) == str(step) and (times is None or len(failed) < times):
      failed.append(step)
      raise error
    return restore(self, directory, *args, **kwargs)

  monkeypatch.setattr(ocp.Checkpointer, 'restore', failing)
  monkeypatch.setattr(restoring, 'FIRST_WAIT_S', 0.01)
  return failed


def restore(workdir):
  """What a resume of the tiny run restores (damaged checkpoints set aside)."""
  manager = checkpointing.checkpoint_manager(str(workdir), CONFIG.keep_checkpoints)
  abstract = abstract_train_state(CONFIG, (32, 32, 3))
  with manager:
    return runs.restore_or_initialize(manager, abstract, lambda: None, CONFIG)[0]


@pytest.fixture
def workdir(tiny_run, tmp_path):
  return shutil.copytree(tiny_run, tmp_path / 'run')


def test_an_io_error_once_is_tried_again_and_the_newest_step_restores(workdir, monkeypatch, caplog):
  before = files(workdir)
  failed = inject(monkeypatch, OSError(errno.EIO, 'Input/output error'), NEWEST, times=1)
  assert int(restore(workdir).step) == NEWEST
  assert failed == [NEWEST]
  assert (
    f'Reading the checkpoint of step {NEWEST} failed (OSError: [Errno 5] Input/output '
    'error); trying again' in caplog.text
  )
  assert files(workdir) == before


def test_an_io_error_on_every_try_stops_naming_the_checkpoint_and_moves_nothing(
  workdir, monkeypatch
):
  before = files(workdir)
  failed = inject(monkeypatch, OSError(errno.EIO, 'Input/output error'), NEWEST)
  with pytest.raises(
    UnreadableCheckpoint,
    match=rf'cannot read the checkpoint of step {NEWEST} in '
    rf'{workdir}/checkpoints: '
    r'OSError: \[Errno 5\] Input/output error\. Nothing was moved or '
    r'deleted',
  ):
    restore(workdir)
  assert failed == [NEWEST] * restoring.TRIES
  assert files(workdir) == before


def test_out_of_memory_on_restore_stops_at_once_and_moves_nothing(workdir, monkeypatch):
  before = files(workdir)
  failed = inject(
    monkeypatch,
    jax.errors.JaxRuntimeError(
      'RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1073741824 bytes.'
    ),
    NEWEST,
  )
  with pytest.raises(
    UnreadableCheckpoint,
    match=r'JaxRuntimeError: RESOURCE_EXHAUSTED: Out of '
    r'memory',
  ):
    restore(workdir)
  assert failed == [NEWEST]  # Not tried again: memory does not come back by waiting.
  assert files(workdir) == before


def test_a_checkpoint_without_its_fingerprint_is_damaged_not_trusted(workdir, caplog):
  shutil.rmtree(workdir / 'checkpoints' / str(NEWEST) / 'fingerprint')
  assert int(restore(workdir).step) == 2
  assert f'Checkpoint of step {NEWEST} is damaged and was skipped' in caplog.text
  assert 'its fingerprint item is missing' in caplog.text
  assert (workdir / checkpointing.DAMAGED_DIR / str(NEWEST)).is_dir()


def test_a_config_change_with_a_damaged_newest_checkpoint_is_refused_and_moves_nothing(workdir):
  shutil.rmtree(workdir / 'checkpoints' / str(NEWEST) / 'fingerprint')
  before = files(workdir)
  with pytest.raises(
    InputError,
    match=r'batch_size: 16 -> 8\. Give the new config another '
    r'--workdir.*Nothing was changed',
  ):
    loop.train_and_evaluate(tiny_config(**{**TINY_RUN, 'batch_size': 8}), str(workdir))
  assert files(workdir) == before

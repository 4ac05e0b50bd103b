"""What the machine or the user can do wrong, in process: a second run on a busy
workdir, a full disk, a config that changes the training on resume, few
classes, an evaluation that must read the run's own data."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from absl import logging as absl_logging

from acnet_jax.data import order
from acnet_jax.data.image_folder import ImageFolderSource
from acnet_jax.errors import REPORTED_ERRORS, InputError
from acnet_jax.training import checkpointing, held_back, loop, write_failures
from acnet_jax.training.lock import LOCK_FILE, WorkdirBusy
from acnet_jax.training.presets import preset
from acnet_jax.training.workdir import with_recorded_data
from tests.conftest import TINY_RUN
from tests.support.images import make_image_folder
from tests.support.runs import (
  TINY_FLAGS,
  final_state,
  finish,
  start_main,
  tiny_config,
  wait_for_steps,
)

# Holds WORKDIR/.lock as a run does, until killed.
HOLDER = """
import fcntl, json, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.lockf(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, json.dumps({'host': 'hostA', 'pid': 4242, 'started': 'then',
                         'command': 'python -m acnet_jax.main --workdir=X'}).encode())
print('held', flush=True)
time.sleep(600)
"""


def test_a_second_run_on_a_busy_workdir_stops_naming_both_and_changes_nothing(tiny_run, tmp_path):
  workdir = shutil.copytree(tiny_run, tmp_path / 'run')
  holder = subprocess.Popen(
    [sys.executable, '-c', HOLDER, str(workdir / LOCK_FILE)], stdout=subprocess.PIPE, text=True
  )
  try:
    assert holder.stdout.readline().strip() == 'held'
    before = {p: p.stat().st_mtime_ns for p in workdir.rglob('*')}
    with pytest.raises(
      WorkdirBusy,
      match=rf'{workdir} is in use by another run \(process 4242 '
      r'on hostA, started then: python -m acnet_jax.main '
      r'--workdir=X\).*Nothing was changed',
    ):
      loop.train_and_evaluate(tiny_config(**TINY_RUN), str(workdir))
    assert {p: p.stat().st_mtime_ns for p in workdir.rglob('*')} == before
    # Evaluating reads a busy workdir without its lock.
    assert loop.evaluate(tiny_config(**TINY_RUN), str(workdir))['step'] == 4
  finally:
    holder.kill()
    holder.wait()
  # A lock whose process died is free: the kernel released it.
  loop.train_and_evaluate(tiny_config(**TINY_RUN), str(workdir))


def mount_tmpfs(mount: Path, size: str) -> None:
  mount.mkdir()
  mounted = subprocess.run(
    ['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(mount)],
    capture_output=True,
    text=True,
  )
  if mounted.returncode != 0:
    pytest.skip(f'cannot mount a tmpfs here ({mounted.stderr.strip()}): the test needs root')


def run_as_root(command: list[str], tries: int = 3) -> None:
  """`command`, tried again a second later: the bind remount failed once in CI,
  beside another worker's mounts, with its message lost; a last failure keeps it."""
  for _ in range(tries):
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode == 0:
      return
    time.sleep(1)
  pytest.fail(f'{" ".join(command)} failed: {done.stderr.strip()}')


@pytest.fixture
def disk(tmp_path):
  """Where a test mounts a tmpfs (`mount_tmpfs`), unmounted after it."""
  mount = tmp_path / 'disk'
  yield mount
  # Lazily: the failed run may still hold files open there.
  subprocess.run(['umount', '--lazy', str(mount)], capture_output=True)


# rc8 ACNet on the command line, 12 steps, a checkpoint and a log line each.
DISK_FLAGS = [
  *TINY_FLAGS,
  '--config.num_epochs=3',
  '--config.checkpoint_every_steps=1',
  '--config.keep_checkpoints=100',
  '--config.log_every_steps=1',
]


def assert_ends_in_the_paragraph(output: str, paragraph: str) -> None:
  """The paragraph is the last line, and no traceback is printed at all: the
  background writes that failed are counted in it, not logged."""
  lines = [line for line in output.splitlines() if line.strip()]
  assert re.search(paragraph, lines[-1]), output[-3000:]
  assert 'Traceback' not in output and 'exception was never retrieved' not in output, output[-5000:]


@pytest.mark.needs_root
@pytest.mark.full  # A minute or two: two runs of the command.
def test_a_full_disk_is_one_paragraph_and_the_checkpoints_before_it_resume(disk, tmp_path):
  mount_tmpfs(disk, '3m')
  workdir = disk / 'run'
  output = finish(process := start_main(workdir, DISK_FLAGS))
  assert process.returncode == 1, output[-3000:]
  # The failing file is named when the error carries it; one raised in Orbax's
  # background commit thread may not.
  assert_ends_in_the_paragraph(
    output,
    rf'no space left on {workdir} \(No space left on device( writing {workdir}/\S+)?'
    r'(; background writes that failed alike: \d+)?\)\. The checkpoints written '
    r'before are intact',
  )
  saved = checkpointing.checkpoint_manager(str(workdir), 100).all_steps()
  assert saved, 'no checkpoint fitted at all: the disk is too small for this test'
  # Moved to a disk with room, the run resumes from the newest intact one (the
  # failed save's temporary folder stays behind: a rerun would remove it).
  moved = Path(
    shutil.copytree(
      workdir, tmp_path / 'moved', ignore=shutil.ignore_patterns('*.orbax-checkpoint-tmp')
    )
  )
  output = finish(process := start_main(moved, DISK_FLAGS))
  assert process.returncode == 0, output[-3000:]
  assert f'Restored the checkpoint of step {max(saved)}.' in output
  assert json.loads((moved / 'eval.json').read_text())['step'] == 12


@pytest.mark.needs_root
@pytest.mark.full  # A minute each.
@pytest.mark.parametrize(
  'how,paragraph',
  [
    ('read-only', r'cannot write to {workdir} \(Read-only file system'),
    ('vanished', r'cannot write to {workdir} \(No such file or directory'),
  ],
)
def test_a_workdir_that_turns_read_only_or_vanishes_mid_run_is_one_paragraph(how, paragraph, disk):
  mount_tmpfs(disk, '64m')
  workdir = disk / 'run'
  process = start_main(workdir, DISK_FLAGS)
  wait_for_steps(workdir, 3, process)
  # A file system with files open for writing cannot be remounted read-only: a
  # read-only bind mount of the workdir over itself takes the run's next writes.
  changes = (
    [
      ['mount', '--bind', str(workdir), str(workdir)],
      ['mount', '-o', 'remount,bind,ro', str(workdir)],
    ]
    if how == 'read-only'
    else [['umount', '--lazy', str(disk)]]
  )
  for change in changes:
    run_as_root(change)
  output = finish(process)
  assert process.returncode == 1, output[-3000:]
  assert_ends_in_the_paragraph(output, paragraph.format(workdir=workdir))


@pytest.fixture
def hooks_restored():
  """A reported write failure holds back what follows for good: not beyond the test."""
  loggers = [logging.getLogger(name) for name in held_back.BACKGROUND_LOGGERS]
  before = [list(logger.filters) for logger in loggers], sys.excepthook, sys.unraisablehook
  yield
  for logger, filters in zip(loggers, before[0]):
    logger.filters[:] = filters
  sys.excepthook, sys.unraisablehook = before[1:]


def test_background_write_failures_are_counted_in_the_paragraph_not_logged(
  tmp_path, caplog, hooks_restored
):
  failure = ValueError(
    'RESOURCE_EXHAUSTED: Error writing local file '
    f'"{tmp_path}/checkpoints/3/d/1": No space left on device '
    "[os_error_code='28']"
  )
  with pytest.raises(
    write_failures.WriteFailed, match=r'; background writes that failed alike: 3\)\.'
  ):
    with write_failures.reported_as_one_paragraph(str(tmp_path)):
      for _ in range(2):  # As Orbax's save threads log them.
        try:
          raise failure
        except ValueError:
          absl_logging.exception('_SignalingThread.run() raised an exception')
      absl_logging.error('an error of another kind')
      absl_logging.error('%s', failure)  # Its message alone names the failure.
      raise RuntimeError('the save failed') from failure
  assert 'an error of another kind' in caplog.text
  assert 'SignalingThread' not in caplog.text and 'RESOURCE_EXHAUSTED' not in caplog.text


def test_once_the_workdir_is_gone_records_without_a_write_error_are_still_shown(
  tmp_path, caplog, hooks_restored
):
  """The paragraph itself is logged after the block, the filter still in
  place: a gone workdir must not make every error record a failed write."""
  workdir = tmp_path / 'run'
  workdir.mkdir()
  with pytest.raises(write_failures.WriteFailed) as failed:
    with write_failures.reported_as_one_paragraph(str(workdir)):
      workdir.rmdir()
      raise ValueError('No ArrayMetadata found')
  absl_logging.error('%s', failed.value)
  assert f'cannot write to {workdir} (No such file or directory' in caplog.text


def test_what_is_held_back_is_shown_when_no_write_failed(tmp_path, caplog, capsys, hooks_restored):
  """A closed event loop's error (as tensorstore prints it) and a failed
  write's record are held back; the block ending otherwise shows both."""
  failure = OSError(28, 'No space left on device', str(tmp_path / 'x'))
  with pytest.raises(ZeroDivisionError):
    with write_failures.reported_as_one_paragraph(str(tmp_path)):
      sys.excepthook(RuntimeError, RuntimeError('Event loop is closed'), None)
      absl_logging.error('a write failed', exc_info=failure)
      assert 'a write failed' not in caplog.text and 'Event loop' not in capsys.readouterr().err
      raise ZeroDivisionError
  assert 'a write failed' in caplog.text
  assert 'RuntimeError: Event loop is closed' in capsys.readouterr().err


@pytest.mark.parametrize(
  'error', [InputError('a bad value'), loop.NonFiniteLoss('the training loss is nan at step 3')]
)
def test_an_error_reported_as_it_is_passes_unchanged_though_the_workdir_is_gone(
  error, tmp_path, hooks_restored
):
  """A diverged run is no input error (NonFiniteLoss is a TrainingError), but
  is reported as one paragraph all the same: main exits 1 on both."""
  assert not isinstance(loop.NonFiniteLoss(''), InputError)
  assert isinstance(error, REPORTED_ERRORS)
  workdir = tmp_path / 'run'
  workdir.mkdir()
  with pytest.raises(type(error)) as caught:
    with write_failures.reported_as_one_paragraph(str(workdir)):
      workdir.rmdir()
      raise error
  assert caught.value is error


def test_a_write_failure_elsewhere_than_the_workdir_is_not_taken_for_one(tmp_path):
  error = ConnectionResetError(104, 'Connection reset by peer')
  assert write_failures.write_failure(error, str(tmp_path)) is None
  metrics = str(tmp_path / 'metrics.jsonl')
  assert write_failures.write_failure(OSError(13, 'Permission denied', metrics), str(tmp_path)) == (
    13,
    metrics,
  )
  assert write_failures.write_failure(RuntimeError('wrapped'), str(tmp_path)) is None
  tensorstore = ValueError(
    'RESOURCE_EXHAUSTED: Error writing local file "/x/ckpt": Failed '
    'writing: "/x/ckpt.__lock": Failed to write 50792 bytes to file 16: '
    "No space left on device [os_error_code='28']"
  )
  wrapped = RuntimeError('a save failed')
  wrapped.__cause__ = tensorstore
  assert write_failures.write_failure(wrapped, str(tmp_path)) == (28, '/x/ckpt.__lock')
  # A workdir that vanished mid-write: tensorstore says only NOT_FOUND.
  vanished = ValueError(
    f'NOT_FOUND: Error writing "a/0" in OCDBT database at local file '
    f'"{tmp_path}/checkpoints/2.orbax-checkpoint-tmp/state/": Error reading '
    f'local file "{tmp_path}/checkpoints/2.orbax-checkpoint-tmp/state/d/1"'
  )
  assert write_failures.write_failure(vanished, str(tmp_path)) == (
    2,
    f'{tmp_path}/checkpoints/2.orbax-checkpoint-tmp/state/d/1',
  )
  assert write_failures.write_failure(vanished, '/elsewhere') is None
  # Gone, the workdir explains any error; so does another folder made at its
  # path (Orbax's writes recreate it below a vanished mount).
  metadata = ValueError('No ArrayMetadata found')
  gone = str(tmp_path / 'gone')
  assert write_failures.failure_of(metadata, gone, None) == (2, gone)
  here = write_failures.folder_identity(str(tmp_path))
  assert write_failures.failure_of(metadata, str(tmp_path), here) is None
  device, inode = here
  on_the_mount_that_vanished = (device + 1, inode)
  assert write_failures.failure_of(metadata, str(tmp_path), on_the_mount_that_vanished) == (
    2,
    str(tmp_path),
  )


def test_resuming_with_another_batch_size_is_refused_naming_it(tiny_run, tmp_path):
  workdir = shutil.copytree(tiny_run, tmp_path / 'run')
  before = {p: p.stat().st_mtime_ns for p in workdir.rglob('*') if p.name != LOCK_FILE}
  changed = tiny_config(**{**TINY_RUN, 'batch_size': 8, 'num_epochs': 2, 'log_every_steps': 50})
  with pytest.raises(
    InputError,
    match=r'batch_size: 16 -> 8; num_epochs: 1 -> 2\. Give the new '
    r'config another --workdir, or rerun with '
    r'--allow_config_change',
  ):
    loop.train_and_evaluate(changed, str(workdir))
  assert {p: p.stat().st_mtime_ns for p in workdir.rglob('*') if p.name != LOCK_FILE} == before


@pytest.mark.full  # A run resumed.
def test_an_allowed_config_change_resumes_with_a_warning(tiny_run, tmp_path, caplog):
  workdir = shutil.copytree(tiny_run, tmp_path / 'run')
  changed = tiny_config(
    **{**TINY_RUN, 'num_epochs': 2, 'log_every_steps': 50, 'checkpoint_every_steps': 8}
  )
  result = loop.train_and_evaluate(changed, str(workdir), allow_config_change=True)
  assert result['step'] == 8
  assert 'with a config that changes the training: num_epochs: 1 -> 2' in caplog.text
  assert 'log_every_steps' not in caplog.text  # Outside the trajectory: no warning.


@pytest.mark.full  # 21 s; the CLI's three-class test is beside it in the full tier.
def test_three_classes_train_and_evaluate_with_top3(tmp_path):
  folder = make_image_folder(
    tmp_path / 'data', 8, 4, num_classes=3, size=32, real=False, varied_modes=False
  )
  config = tiny_config(
    dataset='image_folder',
    data_dir=str(folder),
    num_classes=3,
    batch_size=8,
    eval_batch_size=8,
    num_epochs=1,
  )
  result = loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert {'top3', 'fused_top3'} <= set(result) and 'top5' not in result
  assert result['top3'] == 1.0  # Three guesses of three classes.
  assert json.loads((tmp_path / 'run' / 'eval.json').read_text())['top3'] == 1.0


def test_evaluating_a_run_reads_the_data_it_recorded_unless_told_otherwise(tiny_run):
  config = preset('rc56', 'acnet_lrs1')  # cifar10 by default: a download.
  recorded = with_recorded_data(config, str(tiny_run), given=frozenset())
  assert (recorded.dataset, recorded.synthetic_examples, recorded.model) == (
    'synthetic',
    64,
    'rc56',
  )
  given = with_recorded_data(config, str(tiny_run), given=frozenset({'dataset', 'data_dir'}))
  assert given.dataset == 'cifar10'
  assert with_recorded_data(config, '/nonexistent', given=frozenset()).dataset == 'cifar10'


@pytest.mark.full
def test_a_data_fault_mid_run_saves_the_last_step_and_the_rerun_ends_bitwise(tmp_path):
  """A file the stream cannot decode, first read by the fifth step: the
  checkpoint of step 4 is saved and the file named; once repaired, the rerun
  resumes there and ends bitwise where an uninterrupted run ends."""
  folder = make_image_folder(tmp_path / 'data', 8, 4, size=(40, 80), real=False, varied_modes=False)
  config = tiny_config(
    dataset='image_folder',
    data_dir=str(folder),
    pipeline='stream',
    image_size=16,
    num_epochs=3,
    data_workers=2,
    checkpoint_every_steps=100,
    log_every_steps=100,
  )
  loop.train_and_evaluate(config, str(tmp_path / 'reference'))

  source = ImageFolderSource(str(folder), 'train')
  steps_per_epoch = len(source) // config.batch_size
  # Every file is read once an epoch: one of the first epoch's last batch.
  bad = Path(
    source.name(
      int(
        order.train_batch_indices(config.seed, 4, steps_per_epoch, config.batch_size, len(source))[
          0
        ]
      )
    )
  )
  good = bad.read_bytes()
  bad.write_bytes(b'not an image')
  workdir = tmp_path / 'run'
  with pytest.raises(
    loop.DataFault,
    match=rf'{bad} is not a readable image.*Training stopped '
    r'before step 5; the checkpoint of step 4 is in',
  ):
    loop.train_and_evaluate(config, str(workdir))
  assert checkpointing.checkpoint_manager(str(workdir), 3).all_steps() == [4]

  bad.write_bytes(good)
  loop.train_and_evaluate(config, str(workdir))
  (a, a_step), (b, b_step) = (
    final_state(workdir, config),
    final_state(tmp_path / 'reference', config),
  )
  assert a_step == b_step == 3 * steps_per_epoch
  for key, value in b.items():
    assert (a[key] == value).all(), key  # Bitwise.


@pytest.mark.full  # An export and an analysis of a run.
def test_an_export_and_an_analysis_that_cannot_write_are_one_paragraph(tiny_run, tmp_path):
  """A read-only folder (a file where a folder must go): the commands' writes
  fail as the run's do."""
  from acnet_jax import export
  from acnet_jax.analysis import report

  workdir = shutil.copytree(tiny_run, tmp_path / 'run', ignore=shutil.ignore_patterns('export'))
  (workdir / 'export.partial').write_text('a file in the way')
  with pytest.raises(write_failures.WriteFailed, match=rf'cannot write to {workdir} \('):
    export.export_run(str(workdir), formats='stablehlo')
  (tmp_path / 'out').write_text('a file in the way')
  with pytest.raises(write_failures.WriteFailed, match=rf'cannot write to {tmp_path}/out \('):
    report.analyze([str(workdir)], str(tmp_path / 'out'))

"""python -m tests.support.process_faults --fault=PROCESS:STEP:KIND... MAIN_FLAGS...:
`acnet_jax.main MAIN_FLAGS`, in which process PROCESS meets KIND with the
checkpoint of step STEP: `damage` (its reads fail with a decode error, as
from damaged bytes), `eio` (its reads fail with an I/O error, on every try)
or `unmovable` (moving it aside fails: permission denied). The other
processes work as usual. Each process prints the step it restored. How a
test gives one process of several a fault of its own."""

from __future__ import annotations

import errno
import os
import shutil
import sys

import orbax.checkpoint as ocp
from absl import app

from acnet_jax import main
from acnet_jax.training import restoring

READ_FAULTS = {
  'damage': lambda: ValueError('DATA_LOSS: Error reading local file: injected damage'),
  'eio': lambda: OSError(errno.EIO, 'Input/output error'),
}
FLAG = '--fault='


def fail_reads_of(step: int, kind: str) -> None:
  restore = ocp.Checkpointer.restore

  def failing(self, directory, *args, **kwargs):
    if os.path.basename(str(directory)) == str(step):
      raise READ_FAULTS[kind]()
    return restore(self, directory, *args, **kwargs)

  ocp.Checkpointer.restore = failing


def fail_moves_of(step: int) -> None:
  move = shutil.move

  def failing(source, destination, *args, **kwargs):
    if os.path.basename(str(source)) == str(step):
      raise PermissionError(errno.EACCES, 'Permission denied', str(source))
    return move(source, destination, *args, **kwargs)

  restoring.shutil.move = failing


def report_the_restored_step() -> None:
  restore_newest = restoring.restore_newest

  def reporting(*args, **kwargs):
    state, damaged = restore_newest(*args, **kwargs)
    print(f'restored step {None if state is None else int(state.step)}', flush=True)
    return state, damaged

  restoring.restore_newest = reporting


def inject(fault: str, flags: list[str]) -> None:
  """`fault` (PROCESS:STEP:KIND), where this is process PROCESS."""
  process, step, kind = fault.split(':')
  if f'--process_id={process}' not in flags:
    return
  if kind == 'unmovable':
    fail_moves_of(int(step))
  else:
    fail_reads_of(int(step), kind)


if __name__ == '__main__':
  args = sys.argv[1:]
  flags = [arg for arg in args if not arg.startswith(FLAG)]
  for fault in args:
    if fault.startswith(FLAG):
      inject(fault[len(FLAG) :], flags)
  report_the_restored_step()
  sys.argv = [sys.argv[0], *flags]  # config_flags reads its overrides from sys.argv.
  app.run(main.main, flags_parser=main.parse_flags)

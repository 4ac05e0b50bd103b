"""python -m tests.support.faulty_reads PROCESS STEP KIND MAIN_FLAGS...:
`acnet_jax.main MAIN_FLAGS`, in which process PROCESS's reads of the
checkpoint of step STEP fail with KIND (`damage`: a decode error, as from
damaged bytes; `eio`: an I/O error, on every try); the other processes read
as usual. Each process prints the step it restored. How a test gives one
process of several a fault of its own."""

from __future__ import annotations

import errno
import os
import sys

import orbax.checkpoint as ocp
from absl import app

from acnet_jax import main
from acnet_jax.training import restoring

FAULTS = {
    'damage': lambda: ValueError('DATA_LOSS: Error reading local file: injected damage'),
    'eio': lambda: OSError(errno.EIO, 'Input/output error'),
}


def fail_reads_of(step: int, kind: str) -> None:
  restore = ocp.Checkpointer.restore

  def failing(self, directory, *args, **kwargs):
    if os.path.basename(str(directory)) == str(step):
      raise FAULTS[kind]()
    return restore(self, directory, *args, **kwargs)
  ocp.Checkpointer.restore = failing


def report_the_restored_step() -> None:
  restore_newest = restoring.restore_newest

  def reporting(*args, **kwargs):
    state, damaged = restore_newest(*args, **kwargs)
    print(f'restored step {None if state is None else int(state.step)}', flush=True)
    return state, damaged
  restoring.restore_newest = reporting


if __name__ == '__main__':
  process, step, kind, *flags = sys.argv[1:]
  if f'--process_id={process}' in flags:
    fail_reads_of(int(step), kind)
  report_the_restored_step()
  sys.argv = [sys.argv[0], *flags]  # config_flags reads its overrides from sys.argv.
  app.run(main.main, flags_parser=main.parse_flags)

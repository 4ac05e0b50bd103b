"""Stopping on request: SIGTERM/SIGINT become a stop at the next step
boundary, agreed by every process, so that all of them save the same step.

With several processes a signal may reach only some of them (a preempted
host); the Orbax save is collective, so a process that stopped alone would
hang the others or write a checkpoint of a step they never reached.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import jax
import numpy as np
from jax.experimental import multihost_utils

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(Exception):
  """A stop was requested; a checkpoint of the current step is saved."""

  def __init__(self, signal_number: int, process: int, step: int, checkpoint_dir: str):
    name = signal.Signals(signal_number).name
    by = name if process == jax.process_index() else f'{name} to process {process}'
    super().__init__(f'Stopped by {by} at step {step}; the checkpoint of that step is '
                     f'in {checkpoint_dir}. Run the same command again to resume.')
    self.signal_number = signal_number


@contextlib.contextmanager
def stop_requests() -> Iterator[list[int]]:
  """Records SIGTERM and SIGINT instead of dying; yields the signal numbers
  received so far."""
  received: list[int] = []
  handler = lambda signum, frame: received.append(signum)
  previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
  try:
    yield received
  finally:
    for sig, old in previous.items():
      signal.signal(sig, old)


def agreed_stop(received: list[int]) -> tuple[int, int] | None:
  """(signal, process) of the first process that was asked to stop, or None.

  Every process must call it at the same step boundary: with several
  processes it is a collective (a small all-gather, which waits for the
  step dispatched before it).
  """
  mine = received[0] if received else 0
  if jax.process_count() == 1:
    return (mine, 0) if mine else None
  signals = np.asarray(multihost_utils.process_allgather(np.int32(mine))).reshape(-1)
  asked = np.flatnonzero(signals)
  return (int(signals[asked[0]]), int(asked[0])) if asked.size else None

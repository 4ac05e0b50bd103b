"""Stopping on request: SIGTERM/SIGINT become a stop at the next step
boundary, agreed by every process, so that all of them save the same step.

With several processes a signal may reach only some of them (a preempted
host); the Orbax save is collective, so a process that stopped alone would
hang the others or write a checkpoint of a step they never reached.
"""

from __future__ import annotations

import contextlib
import signal
import time
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
    super().__init__(
      f'Stopped by {by} at step {step}; the checkpoint of that step is '
      f'in {checkpoint_dir}. Run the same command again to resume.'
    )
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


class StopAgreement:
  """`check(step)`: (signal, process) of the first process that was asked to
  stop, or None.

  One process looks at its own signals every step. Several processes must
  decide at the same step: they all-gather their signals at agreement steps
  that each computes alike, about every `agree_seconds` (an all-gather that
  waits for every process: not every step), from the slowest
  process's step time since the last agreement (gathered with the signals).
  """

  def __init__(self, received: list[int], agree_seconds: float):
    self.received = received
    self.agree_seconds = agree_seconds
    self.next_step = 0  # The first step boundary agrees.
    self.last_step: int | None = None
    self.last_time = 0.0

  def check(self, step: int) -> tuple[int, int] | None:
    mine = self.received[0] if self.received else 0
    if jax.process_count() == 1:
      return (mine, 0) if mine else None
    if step < self.next_step:
      return None
    # The loop waits for step - 1 before it agrees at step: the time between two
    # agreements is that of the steps finished between them.
    now = time.perf_counter()
    seconds_per_step = (
      0.0 if self.last_step is None else (now - self.last_time) / max(step - self.last_step, 1)
    )
    gathered = np.asarray(
      multihost_utils.process_allgather(np.array([mine, seconds_per_step], np.float64))
    ).reshape(-1, 2)
    signals, slowest = gathered[:, 0].astype(int), float(gathered[:, 1].max())
    # The first agreement has no step time yet: the next step agrees again.
    # Later intervals at most double, so that a few fast steps measured early
    # (before the first evaluation, say) cannot set one far longer than meant.
    previous = 0 if self.last_step is None else step - self.last_step
    interval = (
      1
      if self.last_step is None
      else min(int(self.agree_seconds / max(slowest, 1e-9)), 2 * previous)
    )
    self.last_step, self.last_time = step, now
    self.next_step = step + max(1, interval)
    asked = np.flatnonzero(signals)
    return (int(signals[asked[0]]), int(asked[0])) if asked.size else None

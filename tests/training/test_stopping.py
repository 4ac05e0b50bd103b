"""When several processes agree whether to stop: the schedule of agreements
from the slowest process's step time, and the first process asked to stop,
with the all-gather replaced by a known other process."""

from __future__ import annotations

import signal

import numpy as np
import pytest

from acnet_jax.training import stopping


class OtherProcess:
  """Stands in for process 1 in the all-gather: its signal and step time."""

  def __init__(self, seconds_per_step: float):
    self.signal = 0
    self.seconds_per_step = seconds_per_step
    self.calls = 0

  def allgather(self, mine: np.ndarray) -> np.ndarray:
    self.calls += 1
    return np.stack([mine, np.array([self.signal, self.seconds_per_step])])


@pytest.fixture
def two_processes(monkeypatch):
  other = OtherProcess(seconds_per_step=2.0)
  monkeypatch.setattr(stopping.jax, 'process_count', lambda: 2)
  monkeypatch.setattr(stopping.multihost_utils, 'process_allgather', other.allgather)
  # This process: 0.1 s a step (its clock advances so much at each reading).
  clock = iter(0.1 * t for t in range(1000))
  monkeypatch.setattr(stopping.time, 'perf_counter', lambda: next(clock))
  return other


def test_agreements_come_every_agree_seconds_of_the_slowest_process(two_processes):
  agreement = stopping.StopAgreement([], agree_seconds=10.0)
  agreed_at = []
  for step in range(1, 20):
    calls = two_processes.calls
    assert agreement.check(step) is None
    if two_processes.calls > calls:
      agreed_at.append(step)
  # Step 1 agrees (no step time yet), then step 2; the interval doubles up
  # to 10 s of the slower process's 2 s steps: every 5 steps.
  assert agreed_at == [1, 2, 4, 8, 13, 18]


def test_fast_first_steps_cannot_set_a_long_interval(two_processes):
  """Steps measured before the first evaluation can be far faster than those
  after it: the interval grows at most twofold per agreement."""
  two_processes.seconds_per_step = 0.001
  agreement = stopping.StopAgreement([], agree_seconds=10.0)
  agreed_at = []
  for step in range(1, 40):
    calls = two_processes.calls
    agreement.check(step)
    if two_processes.calls > calls:
      agreed_at.append(step)
      if len(agreed_at) == 2:  # Measured fast at step 2, slow from then on.
        two_processes.seconds_per_step = 2.0
  # Without the cap, step 2's measure would set an interval of 10,000 steps.
  assert agreed_at == [1, 2, 4, 8, 13, 18, 23, 28, 33, 38]


def test_a_signal_to_the_other_process_stops_this_one_at_the_next_agreement(two_processes):
  received: list[int] = []
  agreement = stopping.StopAgreement(received, agree_seconds=10.0)
  assert agreement.check(1) is None and agreement.check(2) is None
  two_processes.signal = int(signal.SIGTERM)
  stops = {step: agreement.check(step) for step in range(3, 5)}
  assert stops == {3: None, 4: (signal.SIGTERM, 1)}


def test_one_process_stops_at_the_next_step(monkeypatch):
  received: list[int] = []
  agreement = stopping.StopAgreement(received, agree_seconds=10.0)
  assert agreement.check(1) is None
  received.append(int(signal.SIGINT))
  assert agreement.check(2) == (signal.SIGINT, 0)

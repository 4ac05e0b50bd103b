"""The one timing loop every benchmark uses (acnet_jax/benchmarking/timing.py):
candidates in turn, every other round reversed, each call waited for."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from acnet_jax.benchmarking.timing import (
  interleaved_times,
  median_time,
  successive_steps,
  summary,
)


def test_candidates_are_called_in_turn_after_the_warmup_every_other_round_reversed():
  calls = []
  runs = {'normal': lambda: calls.append('n'), 'acnet': lambda: calls.append('a')}
  times = interleaved_times(runs, rounds=3, warmup=2)
  assert calls == ['n', 'a'] * 2 + ['n', 'a', 'a', 'n', 'n', 'a']
  assert {name: len(seconds) for name, seconds in times.items()} == {'normal': 3, 'acnet': 3}
  assert all(s >= 0 for seconds in times.values() for s in seconds)


def test_each_call_is_timed_until_what_it_returns_is_ready(monkeypatch):
  waited = []
  monkeypatch.setattr(jax, 'block_until_ready', lambda x: waited.append(x) or time.sleep(0.02))
  times = interleaved_times({'step': lambda: jnp.ones(2)}, rounds=2)
  assert len(waited) == 2 and all(t >= 0.02 for t in times['step'])


def test_a_candidate_that_syncs_itself_returns_a_plain_value():
  times = interleaved_times({'torch-like': lambda: 1.5, 'nothing': lambda: None}, rounds=2)
  assert [len(seconds) for seconds in times.values()] == [2, 2]


def test_summary_is_the_median_and_the_range():
  assert summary([3.0, 1.0, 2.0, 10.0]) == {'median_s': 2.5, 'min_s': 1.0, 'max_s': 10.0, 'n': 4}


def test_median_time_of_successive_steps_skips_the_warmup():
  calls = []
  seconds = median_time(successive_steps(calls.append), repeats=3, warmup=2)
  assert calls == [0, 1, 2, 3, 4] and seconds >= 0

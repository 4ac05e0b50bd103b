"""Timing: the one timing loop every benchmark uses (candidates called in
turn, round by round, each call waited for), its summary, compile time, XLA's
FLOP count and peak memory, and the float32 matmul peak the FLOP/s are read
against."""

from __future__ import annotations

import dataclasses
import itertools
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Timing:
  compile_s: float
  step_s: float  # Median over the timed steps.
  flops: float  # Per step, from XLA's cost analysis of the compiled step.
  batch_size: int
  peak_bytes: float = float('nan')  # XLA's plan of the compiled step (`xla_peak_bytes`).

  @property
  def images_per_s(self) -> float:
    return self.batch_size / self.step_s

  def row(self, peak_flops_per_s: float, **labels: Any) -> dict[str, Any]:
    flops_per_s = self.flops / self.step_s
    return {
      **labels,
      'compile_s': self.compile_s,
      'step_s': self.step_s,
      'images_per_s': self.images_per_s,
      'flops': self.flops,
      'flops_per_s': flops_per_s,
      'fraction_of_peak': flops_per_s / peak_flops_per_s,
      'peak_bytes': self.peak_bytes,
    }


def xla_flops(compiled: jax.stages.Compiled) -> float:
  cost = compiled.cost_analysis()
  if isinstance(cost, Sequence):  # One entry per program in older jax versions.
    cost = cost[0]
  return float(cost.get('flops', float('nan')))


def xla_peak_bytes(compiled: jax.stages.Compiled) -> float:
  """The memory the compiled step holds while it runs, as XLA's buffer
  assignment plans it: its arguments, its outputs (less those written into
  donated arguments) and the one block its temporaries are packed into. Known
  without running the step, so not disturbed by other work on the machine;
  nan where the backend does not say. (XLA's own `peak_memory_in_bytes` counts
  only the arguments on CPU.)"""
  stats = compiled.memory_analysis()
  if stats is None:
    return float('nan')
  return float(
    stats.argument_size_in_bytes
    + stats.output_size_in_bytes
    - stats.alias_size_in_bytes
    + stats.temp_size_in_bytes
  )


def compile_timed(jitted: Callable, *args: Any) -> tuple[jax.stages.Compiled, float]:
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  return compiled, time.perf_counter() - start


def interleaved_times(
  candidates: Mapping[str, Callable[[], Any]], rounds: int, warmup: int = 0
) -> dict[str, list[float]]:
  """Seconds of each call of each candidate, `rounds` per candidate: after
  `warmup` untimed turns, every round calls each candidate once, timed, and
  waits for what it returns (jax.block_until_ready; a candidate that computes
  elsewhere, PyTorch's, returns once it is done). Every other round calls them
  in reverse order (ABBA), so the machine's drift slows every candidate alike
  and none always follows another; their ratios cancel it."""
  names = list(candidates)
  for _ in range(warmup):
    for name in names:
      jax.block_until_ready(candidates[name]())
  times: dict[str, list[float]] = {name: [] for name in names}
  for index in range(rounds):
    for name in names if index % 2 == 0 else names[::-1]:
      start = time.perf_counter()
      jax.block_until_ready(candidates[name]())
      times[name].append(time.perf_counter() - start)
  return times


def summary(times: Sequence[float]) -> dict[str, float]:
  """The median of a candidate's times and their range."""
  return {
    'median_s': statistics.median(times),
    'min_s': min(times),
    'max_s': max(times),
    'n': len(times),
  }


def median_time(run: Callable[[], Any], repeats: int, warmup: int) -> float:
  """The median seconds of `repeats` calls of one candidate after `warmup` (interleaved_times)."""
  return summary(interleaved_times({'run': run}, repeats, warmup)['run'])['median_s']


def successive_steps(step: Callable[[int], Any]) -> Callable[[], Any]:
  """A call that performs step(0), then step(1), ...: a step that takes its index."""
  index = itertools.count()
  return lambda: step(next(index))


def measure_peak(device: jax.Device, size: int, repeats: int = 10) -> float:
  """FLOP/s of a large float32 matmul: what this device attains on dense math.
  The fastest of several runs, since 'attainable' is a best case."""
  a = jax.device_put(
    jnp.asarray(np.random.default_rng(0).standard_normal((size, size)), jnp.float32), device
  )
  matmul, _ = compile_timed(jax.jit(lambda a: a @ a), a)
  times = interleaved_times({'matmul': lambda: matmul(a)}, repeats, warmup=1)['matmul']
  return 2 * size**3 / summary(times)['min_s']

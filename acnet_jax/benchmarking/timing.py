"""Timing compiled steps: compile time, the median of timed calls after warm-up,
XLA's FLOP count and peak memory, and the float32 matmul peak the FLOP/s are
read against."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
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


def step_times(run: Callable[[int], Any], steps: int, warmup: int) -> list[float]:
  """Seconds of each of `steps` timed calls run(i) after `warmup` untimed ones;
  run(i) performs step i and returns its outputs, and each step is waited for."""
  for i in range(warmup):
    jax.block_until_ready(run(i))
  times = []
  for i in range(warmup, warmup + steps):
    start = time.perf_counter()
    jax.block_until_ready(run(i))
    times.append(time.perf_counter() - start)
  return times


def median_step_time(run: Callable[[int], Any], steps: int, warmup: int) -> float:
  return statistics.median(step_times(run, steps, warmup))


def measure_peak(device: jax.Device, size: int, repeats: int = 10) -> float:
  """FLOP/s of a large float32 matmul: what this device attains on dense math.
  The fastest of several runs, since 'attainable' is a best case."""
  a = jax.device_put(
    jnp.asarray(np.random.default_rng(0).standard_normal((size, size)), jnp.float32), device
  )
  matmul, _ = compile_timed(jax.jit(lambda a: a @ a), a)
  return 2 * size**3 / min(step_times(lambda _: matmul(a), repeats, warmup=1))

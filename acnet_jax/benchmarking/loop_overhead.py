"""What the training loop adds to a step: steps/s of `train_and_evaluate`
against the bare jitted step called in a loop, on the same data and program.

The loop's rate is the one it logs itself (`train_steps_per_s` in
metrics.jsonl: the wall clock between log lines, progress bar, stop
agreement, metrics fetches and all), over the intervals after the first
compilation; the bare loop dispatches the same compiled step over the same
batches and waits once at the end.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from typing import Any

from acnet_jax.benchmarking.suite import bench_config
from acnet_jax.benchmarking.timing import interleaved_times
from acnet_jax.blocks.acb import ACB_IMPLS
from acnet_jax.training.loop import train_and_evaluate
from acnet_jax.training.trainer import Trainer, create_mesh


def loop_rate(metrics_path: str, skip_steps: int) -> float:
  """The median of the logged steps/s over the intervals that start after `skip_steps`."""
  with open(metrics_path) as f:
    lines = [json.loads(line) for line in f]
  train = [line for line in lines if 'train_steps_per_s' in line]
  rates = [b['train_steps_per_s'] for a, b in zip(train, train[1:]) if a['step'] >= skip_steps]
  return statistics.median(rates)


def time_loop_overhead(
  model: str = 'rc8', batch_size: int = 32, steps: int = 600, log_every_steps: int = 100
) -> dict[str, Any]:
  """Steps/s of the loop and of the bare step, and the loop's overhead as a
  share of the bare step's time."""
  config = bench_config(model, 'normal', ACB_IMPLS[0], batch_size, batch_size, batch_size * steps)
  config.update(
    dict(
      num_epochs=1,
      log_every_steps=log_every_steps,
      eval_every_epochs=1000,
      checkpoint_every_steps=10 * steps,
    )
  )
  with tempfile.TemporaryDirectory() as workdir:
    train_and_evaluate(config, workdir)
    loop = loop_rate(os.path.join(workdir, 'metrics.jsonl'), skip_steps=2 * log_every_steps)

  trainer = Trainer(config, create_mesh())
  state = trainer.init_state()
  step = trainer.train_step.lower(state, trainer.train_inputs(0)).compile()
  timed = steps - 2 * log_every_steps

  def dispatch_steps() -> Any:
    """`timed` steps dispatched one after another, waited for once at the end."""
    nonlocal state
    for i in range(timed):
      state, metrics = step(state, trainer.train_inputs(i))
    return metrics

  # One untimed turn first, as the loop's rate skips its first intervals.
  (seconds,) = interleaved_times({'bare': dispatch_steps}, rounds=1, warmup=1)['bare']
  bare = timed / seconds
  return {
    'model': model,
    'batch_size': batch_size,
    'loop_steps_per_s': loop,
    'bare_steps_per_s': bare,
    'overhead': bare / loop - 1,
  }

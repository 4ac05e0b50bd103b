"""What a run reports: metrics.jsonl, TensorBoard events and eval.json."""

from __future__ import annotations

import json
import os
from typing import Any

from absl import logging


class MetricWriter:
  """Metrics as JSON lines (metrics.jsonl) and TensorBoard events, in workdir."""

  def __init__(self, workdir: str):
    import tensorflow as tf  # Only for the event files.
    self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')
    self._summary = tf.summary.create_file_writer(os.path.join(workdir, 'tensorboard'))
    self._tf = tf

  def write(self, step: int, metrics: dict[str, float]) -> None:
    self._jsonl.write(json.dumps({'step': step, **metrics}) + '\n')
    self._jsonl.flush()
    with self._summary.as_default(step=step):
      for name, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
          self._tf.summary.scalar(name, value)
    self._summary.flush()

  def close(self) -> None:
    self._jsonl.close()
    self._summary.close()


def write_eval_report(workdir: str, result: dict[str, Any]) -> None:
  with open(os.path.join(workdir, 'eval.json'), 'w') as f:
    json.dump(result, f, indent=2)
  logging.info('Trained: top1 %.4f top5 %.4f loss %.4f | fused deploy: top1 %.4f top5 %.4f '
               'loss %.4f | %d test examples, step %d', result['top1'], result['top5'],
               result['loss'], result['fused_top1'], result['fused_top5'], result['fused_loss'],
               result['num_examples'], result['step'])

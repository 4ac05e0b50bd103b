"""What a run reports: metrics.jsonl, TensorBoard events and eval.json."""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from absl import logging
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter


class MetricWriter:
  """Metrics as JSON lines (metrics.jsonl) and TensorBoard events, in workdir.

  The events go through TensorBoard's own record writer and protos rather than
  tf.summary: importing TensorFlow cost every run ~15 s (busy 2-core CPU).
  """

  def __init__(self, workdir: str):
    self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')
    events_dir = os.path.join(workdir, 'tensorboard')
    os.makedirs(events_dir, exist_ok=True)
    # A new file per writer, named as TensorBoard looks for them (a resumed run
    # adds one; TensorBoard reads them in name order, so by time).
    name = f'events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}'
    self._events = RecordWriter(open(os.path.join(events_dir, name), 'xb'))
    self._write_event(event_pb2.Event(wall_time=time.time(), file_version='brain.Event:2'))

  def write(self, step: int, metrics: dict[str, float]) -> None:
    self._jsonl.write(json.dumps({'step': step, **metrics}) + '\n')
    self._jsonl.flush()
    scalars = [
      summary_pb2.Summary.Value(tag=name, simple_value=value)
      for name, value in metrics.items()
      if isinstance(value, (int, float)) and not isinstance(value, bool)
    ]
    self._write_event(
      event_pb2.Event(wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=scalars))
    )

  def _write_event(self, event: event_pb2.Event) -> None:
    self._events.write(event.SerializeToString())
    self._events.flush()

  def close(self) -> None:
    self._jsonl.close()
    self._events.close()


def write_eval_report(workdir: str, result: dict[str, Any]) -> None:
  with open(os.path.join(workdir, 'eval.json'), 'w') as f:
    json.dump(result, f, indent=2)
  names = [key for key in result if key.startswith('top') or key == 'loss']
  scores = lambda prefix: ' '.join(f'{name} {result[prefix + name]:.4f}' for name in names)
  logging.info(
    'Trained: %s | fused deploy: %s | %d test examples, step %d',
    scores(''),
    scores('fused_'),
    result['num_examples'],
    result['step'],
  )

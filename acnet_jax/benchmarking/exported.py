"""Eval throughput of a run's exported deploy model where it is deployed: the
jax.export file under XLA beside the ONNX float and int8 models under ONNX
Runtime (the `onnx` extra), at the same batch sizes, on the same images.

Before timing, the ONNX float model's logits are checked against XLA's
(both run the same fused function), so the rows compare like with like; the
int8 model's cost in top-1 is in the export's `eval_int8.json`, not here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from acnet_jax.benchmarking.results import markdown_table
from acnet_jax.benchmarking.timing import interleaved_times, summary
from acnet_jax.deploy import artifacts, int8
from acnet_jax.deploy.onnx_format import INPUT_NAME, ONNX_FILE
from acnet_jax.errors import InputError

# XLA and ONNX Runtime sum each conv in their own order, over every layer: the
# same bound the export's tests hold ONNX Runtime to (tests/support/numerics.py).
LOGITS_RTOL = 1e-4
Forward = Callable[[], Any]  # One batch through one runtime, waited for.


def read_card(export_dir: str) -> dict[str, Any]:
  path = os.path.join(export_dir, artifacts.CARD_FILE)
  if not os.path.isfile(path):
    raise InputError(
      f'{export_dir} holds no {artifacts.CARD_FILE}: not an export folder '
      '(python -m acnet_jax.export --workdir=DIR --format=onnx-int8 writes DIR/export)'
    )
  with open(path) as f:
    return json.load(f)


def xla_forward(export_dir: str) -> Callable[[np.ndarray], Any]:
  with open(os.path.join(export_dir, artifacts.STABLEHLO_FILE), 'rb') as f:
    exported = jax.export.deserialize(bytearray(f.read()))
  return jax.jit(exported.call)


def onnx_forward(path: str) -> Callable[[np.ndarray], Any]:
  session = int8.session(path)
  return lambda images: session.run(None, {INPUT_NAME: images})[0]


def runtimes(export_dir: str) -> dict[str, Callable[[np.ndarray], Any]]:
  """Every runtime the folder has files for, by row label."""
  files = {
    'xla float32': artifacts.STABLEHLO_FILE,
    'onnxruntime float32': ONNX_FILE,
    'onnxruntime int8': int8.INT8_FILE,
  }
  missing = [name for name in files.values() if not os.path.exists(os.path.join(export_dir, name))]
  if missing:
    raise InputError(
      f'{export_dir} lacks {", ".join(missing)}: export the run with '
      '--format=stablehlo,onnx-int8 first'
    )
  return {
    'xla float32': xla_forward(export_dir),
    'onnxruntime float32': onnx_forward(os.path.join(export_dir, ONNX_FILE)),
    'onnxruntime int8': onnx_forward(os.path.join(export_dir, int8.INT8_FILE)),
  }


def check_float_runtimes_agree(run: dict[str, Callable[[np.ndarray], Any]], images: np.ndarray):
  xla = np.asarray(run['xla float32'](images))
  ort = np.asarray(run['onnxruntime float32'](images))
  error, scale = float(np.max(np.abs(xla - ort))), float(np.max(np.abs(xla)))
  if not error <= LOGITS_RTOL * scale:
    raise AssertionError(
      f'ONNX Runtime float logits differ from XLA by {error:.3g} (logits up to {scale:.3g}): '
      'the two files are not the same model'
    )


def forwards(
  run: dict[str, Callable[[np.ndarray], Any]], input_shape: Sequence[int | None], batch_size: int
) -> dict[str, Forward]:
  """One call per runtime on the same random normalised batch, each waited for."""
  images = np.random.default_rng(0).standard_normal((batch_size, *input_shape[1:]), np.float32)
  check_float_runtimes_agree(run, images)
  return {name: (lambda f=f: jax.block_until_ready(f(images))) for name, f in run.items()}


def time_exported(
  export_dir: str, batch_sizes: Sequence[int], rounds: int, warmup: int
) -> list[dict[str, Any]]:
  """A row per batch size and runtime: the median seconds of a batch (over
  `rounds`, the runtimes interleaved) and its range, and images per second."""
  card = read_card(export_dir)
  run = runtimes(export_dir)
  rows = []
  for batch_size in batch_sizes:
    times = interleaved_times(forwards(run, card['input_shape'], batch_size), rounds, warmup)
    for runtime, seconds in times.items():
      stats = summary(seconds)
      rows.append(
        {
          'model': card['model'],
          'conv': card.get('conv'),
          'runtime': runtime,
          'batch_size': batch_size,
          **stats,
          'images_per_s': batch_size / stats['median_s'],
        }
      )
  return rows


def format_rows(rows: Sequence[Mapping[str, Any]]) -> str:
  """The docs' table: a line per batch size and runtime."""
  return markdown_table(
    ['model', 'batch', 'runtime', 'ms a batch (median, range)', 'images/s'],
    [
      [
        f'{row["model"]} {row["conv"]}',
        str(row['batch_size']),
        row['runtime'],
        f'{1e3 * row["median_s"]:.2f} ({1e3 * row["min_s"]:.2f} - {1e3 * row["max_s"]:.2f})',
        f'{row["images_per_s"]:.0f}',
      ]
      for row in rows
    ],
  )

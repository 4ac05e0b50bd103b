"""int8 post-training quantization of the ONNX deploy model, and its cost in
test top-1 (the `onnx` extra).

ONNX Runtime's static quantizer in the QDQ format: weights int8, symmetric,
one scale per output channel; activations uint8 with one scale and zero point
per tensor, from the ranges (MinMax) the float model's activations take on
calibration images of the run's training split. U8S8 is what ONNX Runtime
recommends on x86-64.

On an x86 CPU without VNNI (AVX2, or AVX-512 without VNNI) ONNX Runtime's
u8 x s8 kernels add pairs of products in 16 bits, which saturate where both
use their full 8-bit range (its documentation on quantization, "reduce_range"):
`reduce_range` quantizes the weights to 7 bits, which never saturates. The
report names the CPU and its int8 instructions, as the int8 top-1 can depend
on them, and also gives the top-1 of the same int8 model in reference
arithmetic (`session(..., fused=False)`): what a CPU whose kernels do not
saturate (VNNI, AMX) computes, measured on any CPU.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from acnet_jax.deploy.onnx_format import INPUT_NAME

INT8_FILE = 'model_int8.onnx'
REPORT_FILE = 'eval_int8.json'
CALIBRATION_METHOD = 'MinMax'
CALIBRATION_BATCH = 64  # Images per calibration run of the float model.

Batches = Iterable[tuple[np.ndarray, np.ndarray]]  # (normalised images, labels)


@dataclasses.dataclass(frozen=True)
class Int8Data:
  """What quantizing and evaluating need of a run: `calibration` normalised
  training images at `positions` of its training examples (drawn with
  `seed`), and `test_batches()` its test split once; how to quantize."""

  calibration: np.ndarray
  positions: np.ndarray
  seed: int
  test_batches: Callable[[], Batches]
  reduce_range: bool = False  # 7-bit weights (see above).
  per_layer: bool = False  # Also each layer quantized alone (int8_layers.py).


class CalibrationReader:
  """Hands the quantizer the calibration images in batches, and counts them:
  the report states how many it read, not how many were asked for."""

  def __init__(self, images: np.ndarray):
    self.batches: Iterator[np.ndarray] = iter(
      [images[i : i + CALIBRATION_BATCH] for i in range(0, len(images), CALIBRATION_BATCH)]
    )
    self.images_read = 0

  def get_next(self) -> dict[str, np.ndarray] | None:
    batch = next(self.batches, None)
    if batch is None:
      return None
    self.images_read += len(batch)
    return {INPUT_NAME: batch}


# The x86 instructions ONNX Runtime's int8 kernels choose among.
INT8_INSTRUCTIONS = ('avx2', 'avx512bw', 'avx512_vnni', 'avx_vnni', 'amx_int8')


def cpu() -> dict[str, Any]:
  """This CPU's model name and which of INT8_INSTRUCTIONS it has (Linux)."""
  found = {'model': None, 'int8_instructions': []}
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        key, _, value = line.partition(':')
        if key.strip() == 'model name' and found['model'] is None:
          found['model'] = value.strip()
        elif key.strip() == 'flags':
          flags = set(value.split())
          found['int8_instructions'] = [name for name in INT8_INSTRUCTIONS if name in flags]
          break
  except OSError:
    pass
  return found


def quantize(
  float_path: str,
  int8_path: str,
  calibration: np.ndarray,
  reduce_range: bool = False,
  nodes: Sequence[str] | None = None,
) -> int:
  """Writes the int8 model (only `nodes` quantized, if given); returns how
  many calibration images the quantizer read."""
  from onnxruntime import quantization as q  # Only with the onnx extra.

  reader = CalibrationReader(calibration)
  q.quantize_static(
    float_path,
    int8_path,
    reader,
    quant_format=q.QuantFormat.QDQ,
    per_channel=True,
    activation_type=q.QuantType.QUInt8,
    weight_type=q.QuantType.QInt8,
    calibrate_method=getattr(q.CalibrationMethod, CALIBRATION_METHOD),
    reduce_range=reduce_range,
    nodes_to_quantize=nodes,
  )
  return reader.images_read


REFERENCE_ARITHMETIC = (
  'the same int8 model with ONNX Runtime graph optimizations off: each QuantizeLinear and '
  'DequantizeLinear runs as its own op and each conv, Gemm and Add in float on the dequantized '
  'values, so the int8 products add up exactly (to float32 rounding), as VNNI and AMX kernels '
  'add them, without the 16-bit pair sums of the AVX2 kernels, which saturate'
)


def session(path: str, fused: bool = True) -> Any:
  """An ONNX Runtime session on the CPU; `fused=False` runs the int8 model in
  reference arithmetic (REFERENCE_ARITHMETIC): ONNX Runtime fuses QDQ pairs
  into its integer kernels only as a graph optimization."""
  import onnxruntime as ort

  options = ort.SessionOptions()
  if not fused:
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
  return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def top1_counts(sessions: Sequence[Any], batches: Batches) -> tuple[list[int], int]:
  """Correct predictions of each session's model on the batches (read once), and their number."""
  correct, count = [0] * len(sessions), 0
  for images, labels in batches:
    for k, model in enumerate(sessions):
      logits = model.run(None, {INPUT_NAME: images})[0]
      correct[k] += int(np.sum(np.argmax(logits, axis=-1) == labels))
    count += len(labels)
  return correct, count


def quantize_and_evaluate(directory: str, float_file: str, data: Int8Data) -> dict[str, Any]:
  """Writes INT8_FILE and REPORT_FILE into `directory` beside the float model;
  returns the report."""
  import onnxruntime

  float_path, int8_path = (os.path.join(directory, name) for name in (float_file, INT8_FILE))
  read = quantize(float_path, int8_path, data.calibration, data.reduce_range)
  (float_correct, int8_correct, reference_correct), count = top1_counts(
    (session(float_path), session(int8_path), session(int8_path, fused=False)),
    data.test_batches(),
  )
  float_top1, int8_top1 = float_correct / count, int8_correct / count
  reference_top1 = reference_correct / count
  report = {
    'float_top1': float_top1,
    'int8_top1': int8_top1,
    'drop': float_top1 - int8_top1,
    'reference_int8_top1': reference_top1,
    'reference_drop': float_top1 - reference_top1,
    'reference_arithmetic': REFERENCE_ARITHMETIC,
    'num_test_images': count,
    'calibration': {
      'images': read,
      'method': CALIBRATION_METHOD,
      'split': 'train',
      'positions': [int(p) for p in data.positions],
      'seed': data.seed,
      'which': 'positions in the training examples the run trained on, drawn by '
      'acnet_jax.data.order.random_subset with the seed; evaluation view '
      '(no augmentation), normalised',
    },
    'quantization': {
      'format': 'QDQ',
      'weights': 'int8, symmetric, per output channel'
      + (', 7 bits (reduce_range)' if data.reduce_range else ''),
      'reduce_range': data.reduce_range,
      'activations': 'uint8, per tensor',
    },
    'onnxruntime_version': onnxruntime.__version__,
    'cpu': cpu(),
  }
  with open(os.path.join(directory, REPORT_FILE), 'w') as f:
    json.dump(report, f, indent=2)
  return report

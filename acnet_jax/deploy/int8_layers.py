"""Where int8's cost comes from: the ONNX model quantized one conv or dense
layer at a time (the `onnx` extra).

Each row quantizes a single layer as `model_int8.onnx` quantizes them all
(ONNX Runtime's static quantizer, `nodes_to_quantize=[that node]`: its input
and its weights in 8 bits, or 7 with reduce_range; the rest of the model float) and gives that
model's test top-1 and its drop against the float model, run by ONNX Runtime's
integer kernels and in reference arithmetic (int8.py). A layer whose drop
is most of the whole model's is where the loss is: on an x86 CPU without VNNI
that is typically the first conv, whose input is the image and fills the
uint8 range (int8.py's note on saturation), and which loses nothing in
reference arithmetic.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import tqdm

from acnet_jax.deploy import int8

LAYERS_FILE = 'int8_layers.json'
QUANTIZED_OPS = ('Conv', 'Gemm', 'MatMul')


def quantizable_layers(float_path: str) -> list[dict[str, Any]]:
  """The model's conv and dense nodes in graph order: name, op and weight shape."""
  import onnx

  model = onnx.load(float_path)
  shapes = {tensor.name: list(tensor.dims) for tensor in model.graph.initializer}
  return [
    {'node': node.name, 'op': node.op_type, 'weight_shape': shapes.get(node.input[1])}
    for node in model.graph.node
    if node.op_type in QUANTIZED_OPS
  ]


def evaluate_layers(directory: str, float_file: str, data: int8.Int8Data) -> dict[str, Any]:
  """Writes LAYERS_FILE beside the float model and int8.REPORT_FILE (whose
  float and whole-model int8 top-1 it repeats) and returns its content."""
  float_path = os.path.join(directory, float_file)
  with open(os.path.join(directory, int8.REPORT_FILE)) as f:
    whole = json.load(f)
  layers = quantizable_layers(float_path)
  test_batches = list(data.test_batches())  # Read once, evaluated once a layer.
  with tempfile.TemporaryDirectory() as scratch:
    one_layer_path = os.path.join(scratch, 'one_layer.onnx')
    for layer in tqdm.tqdm(layers, desc='int8, one layer at a time', unit='layer'):
      int8.quantize(
        float_path, one_layer_path, data.calibration, data.reduce_range, nodes=[layer['node']]
      )
      (correct, reference_correct), count = int8.top1_counts(
        (int8.session(one_layer_path), int8.session(one_layer_path, fused=False)), test_batches
      )
      layer['int8_top1'] = correct / count
      layer['drop'] = whole['float_top1'] - layer['int8_top1']
      layer['reference_int8_top1'] = reference_correct / count
      layer['reference_drop'] = whole['float_top1'] - layer['reference_int8_top1']
  report = {
    'float_top1': whole['float_top1'],
    'int8_top1': whole['int8_top1'],
    'drop': whole['drop'],
    'reference_int8_top1': whole['reference_int8_top1'],
    'reference_drop': whole['reference_drop'],
    'layers': layers,
    'method': 'each row: the float model with only that node quantized as '
    f'{int8.INT8_FILE} quantizes every node (its input and weights), on the same '
    'calibration images; drop = float_top1 - int8_top1 of that model (reference_: in '
    'reference arithmetic, see reference_arithmetic)',
    'reference_arithmetic': int8.REFERENCE_ARITHMETIC,
    'num_test_images': whole['num_test_images'],
    'quantization': whole['quantization'],
    'onnxruntime_version': whole['onnxruntime_version'],
    'cpu': whole['cpu'],
  }
  with open(os.path.join(directory, LAYERS_FILE), 'w') as f:
    json.dump(report, f, indent=2)
  return report

"""--format=onnx-int8 on the tiny trained run: the int8 model's test top-1
against its float model's within a bound the test derives from the logits,
and calibration on the stated training images."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from acnet_jax import export
from acnet_jax.deploy import int8, int8_layers, onnx_format, run_images
from acnet_jax.training import workdir as runs
from tests.conftest import TINY_RUN_STEPS
from tests.support.numerics import MODEL_RTOL

pytestmark = pytest.mark.needs_onnx
# Fewer than the tiny run's 64 training images: a subset, drawn.
CALIBRATION_IMAGES = 48


@pytest.fixture
def run_copy(tiny_run, tmp_path):
  """A copy of the tiny run without its export, for a test to export into;
  skipped without the onnx extra."""
  pytest.importorskip('onnxruntime')
  pytest.importorskip('jax2onnx')
  workdir = tmp_path / 'run'
  shutil.copytree(tiny_run, workdir, ignore=shutil.ignore_patterns('export'))
  return workdir


def logits_of(path, batches, fused: bool = True) -> np.ndarray:
  session = int8.session(str(path), fused)
  return np.concatenate(
    [session.run(None, {onnx_format.INPUT_NAME: images})[0] for images, _ in batches]
  )


@pytest.mark.full  # The onnx extra, which the full tier installs.
def test_int8_top1_is_within_the_flips_its_logit_error_allows(run_copy):
  import onnx

  workdir = run_copy
  card = export.export_run(str(workdir), formats='onnx-int8', calibration_images=CALIBRATION_IMAGES)
  directory = workdir / 'export'
  assert card['files'] == {'onnx': 'model.onnx', 'onnx-int8': 'model_int8.onnx'}
  report = json.loads((directory / int8.REPORT_FILE).read_text())

  # Calibration read the stated number of distinct training images, those the report names.
  config = runs.read_run(str(workdir)).config
  calibration = report['calibration']
  assert calibration['images'] == CALIBRATION_IMAGES == len(calibration['positions'])
  assert (
    calibration['positions'] == run_images.calibration_indices(config, CALIBRATION_IMAGES).tolist()
  )
  assert len(set(calibration['positions'])) == CALIBRATION_IMAGES
  assert max(calibration['positions']) < config.synthetic_examples
  assert calibration['method'] == 'MinMax' and calibration['split'] == 'train'

  # It is quantized: convs read int8 weights through QDQ pairs.
  model = onnx.load(str(directory / 'model_int8.onnx'))
  ops = {node.op_type for node in model.graph.node}
  assert {'QuantizeLinear', 'DequantizeLinear', 'Conv'} <= ops
  assert any(t.data_type == onnx.TensorProto.INT8 for t in model.graph.initializer)

  # Both models on the run's test images, here; the report says the same.
  batches = list(run_images.test_batches(config))
  labels = np.concatenate([labels for _, labels in batches])
  float_logits = logits_of(directory / 'model.onnx', batches)
  int8_logits = logits_of(directory / 'model_int8.onnx', batches)
  float_top1 = float(np.mean(np.argmax(float_logits, -1) == labels))
  int8_top1 = float(np.mean(np.argmax(int8_logits, -1) == labels))
  assert report['num_test_images'] == len(labels) == config.synthetic_examples // 4
  assert (report['float_top1'], report['int8_top1']) == (float_top1, int8_top1)
  assert report['drop'] == pytest.approx(float_top1 - int8_top1)
  reference_logits = logits_of(directory / 'model_int8.onnx', batches, fused=False)
  reference_top1 = float(np.mean(np.argmax(reference_logits, -1) == labels))
  assert report['reference_int8_top1'] == reference_top1
  assert report['reference_drop'] == pytest.approx(float_top1 - reference_top1)
  # The float model's top-1 is the run's fused top-1 of that step (eval.json),
  # but for images whose top two logits lie within ONNX's rounding (MODEL_RTOL).
  evaluation = json.loads((workdir / 'eval.json').read_text())
  top2 = np.sort(float_logits, axis=-1)[:, -2:]
  margin = top2[:, 1] - top2[:, 0]
  near_ties = np.mean(margin <= 2 * MODEL_RTOL * np.max(np.abs(float_logits)))
  assert evaluation['step'] == TINY_RUN_STEPS
  assert abs(float_top1 - evaluation['fused_top1']) <= near_ties

  # An image's prediction can change only where int8 moved some logit by at
  # least half the float model's top-2 margin (the top logit down, the
  # runner-up up): top-1 moves by at most the share of such images.
  error = np.max(np.abs(int8_logits - float_logits), axis=-1)
  may_flip = np.mean(margin <= 2 * error)
  assert 0 < np.max(error)  # Quantization changed the logits: the bound is not vacuous.
  assert abs(float_top1 - int8_top1) <= may_flip


def test_calibration_needs_an_image(tiny_run, tmp_path):
  from acnet_jax.errors import InputError

  with pytest.raises(InputError, match='calibrates on at least one training image'):
    export.int8_data(runs.read_run(str(tiny_run)).config, 0)


@pytest.mark.full
def test_the_cli_writes_the_int8_model_and_its_report(run_copy):
  from tests.support.runs import run_command

  workdir = run_copy
  completed = run_command(
    'export', f'--workdir={workdir}', '--format=onnx-int8', '--calibration_images=16'
  )
  assert completed.returncode == 0, completed.stderr[-3000:]
  assert 'model.onnx, model_int8.onnx, model.json, eval_int8.json' in completed.stdout
  report = json.loads((workdir / 'export' / int8.REPORT_FILE).read_text())
  assert report['calibration']['images'] == 16


@pytest.mark.full  # The onnx extra, which the full tier installs.
def test_reduce_range_puts_the_weights_on_7_bits(tiny_run, tmp_path):
  pytest.importorskip('onnxruntime')
  pytest.importorskip('jax2onnx')
  import onnx
  from onnx import numpy_helper

  def int8_weights(reduce_range: bool) -> tuple[np.ndarray, dict]:
    workdir = tmp_path / f'run_{reduce_range}'
    shutil.copytree(tiny_run, workdir, ignore=shutil.ignore_patterns('export'))
    export.export_run(
      str(workdir), formats='onnx-int8', calibration_images=16, reduce_range=reduce_range
    )
    model = onnx.load(str(workdir / 'export' / int8.INT8_FILE))
    weights = [
      numpy_helper.to_array(t)
      for t in model.graph.initializer
      if t.data_type == onnx.TensorProto.INT8 and t.dims
    ]
    report = json.loads((workdir / 'export' / int8.REPORT_FILE).read_text())
    return np.concatenate([w.ravel() for w in weights]).astype(int), report

  full, full_report = int8_weights(False)
  reduced, reduced_report = int8_weights(True)
  assert np.max(np.abs(full)) == 127  # Each channel's largest weight on the full range.
  assert np.max(np.abs(reduced)) == 64  # ... and on 7 bits, symmetric: -64..64.
  assert not full_report['quantization']['reduce_range']
  assert reduced_report['quantization']['reduce_range']
  # The report names the CPU the int8 top-1 was measured on.
  assert reduced_report['cpu'] == int8.cpu() and 'int8_instructions' in reduced_report['cpu']


@pytest.mark.full  # The onnx extra, which the full tier installs.
def test_int8_layers_quantizes_each_layer_alone(run_copy, tmp_path):
  import onnx

  workdir = run_copy
  export.export_run(str(workdir), formats='onnx-int8', calibration_images=16, int8_layers=True)
  directory = workdir / 'export'
  report = json.loads((directory / int8_layers.LAYERS_FILE).read_text())
  whole = json.loads((directory / int8.REPORT_FILE).read_text())
  assert (report['float_top1'], report['int8_top1']) == (whole['float_top1'], whole['int8_top1'])

  # One row per conv and dense node of the float model, in graph order.
  float_model = onnx.load(str(directory / 'model.onnx'))
  nodes = [n.name for n in float_model.graph.node if n.op_type in ('Conv', 'Gemm', 'MatMul')]
  assert [row['node'] for row in report['layers']] == nodes and len(nodes) >= 2

  # A row's model quantizes that node alone: one int8 weight tensor, the node's.
  config = runs.read_run(str(workdir)).config
  data = export.int8_data(config, 16)
  first = report['layers'][0]
  one_layer = tmp_path / 'one_layer.onnx'
  int8.quantize(
    str(directory / 'model.onnx'), str(one_layer), data.calibration, nodes=[first['node']]
  )
  weights = [
    list(t.dims)
    for t in onnx.load(str(one_layer)).graph.initializer
    if t.data_type == onnx.TensorProto.INT8 and len(t.dims) > 1
  ]
  assert weights == [first['weight_shape']]
  # ... and its row is that model's top-1 on the run's test images.
  (correct,), count = int8.top1_counts(
    (int8.session(str(one_layer)),), run_images.test_batches(config)
  )
  assert first['int8_top1'] == correct / count
  assert first['drop'] == pytest.approx(whole['float_top1'] - correct / count)
  (reference,), _ = int8.top1_counts(
    (int8.session(str(one_layer), fused=False),), run_images.test_batches(config)
  )
  assert first['reference_int8_top1'] == reference / count
  assert (report['reference_int8_top1'], report['reference_drop']) == (
    whole['reference_int8_top1'],
    whole['reference_drop'],
  )


def saturating_conv(channels: int, output_scale: float) -> bytes:
  """A QDQ 1x1 conv whose uint8 input (scale 1) and int8 weights (all 127,
  scale 1) can fill their ranges: 255 * 127 * `channels` at most."""
  from onnx import TensorProto, helper, numpy_helper

  constants = {
    'x_scale': np.array(1.0, np.float32),
    'x_zero': np.array(0, np.uint8),
    'w_int8': np.full((1, channels, 1, 1), 127, np.int8),
    'w_scale': np.array([1.0], np.float32),
    'w_zero': np.array([0], np.int8),
    'y_scale': np.array(output_scale, np.float32),
    'y_zero': np.array(0, np.uint8),
  }
  nodes = [
    helper.make_node('QuantizeLinear', ['x', 'x_scale', 'x_zero'], ['x_uint8']),
    helper.make_node('DequantizeLinear', ['x_uint8', 'x_scale', 'x_zero'], ['x_float']),
    helper.make_node('DequantizeLinear', ['w_int8', 'w_scale', 'w_zero'], ['w_float'], axis=0),
    helper.make_node('Conv', ['x_float', 'w_float'], ['y']),
    helper.make_node('QuantizeLinear', ['y', 'y_scale', 'y_zero'], ['y_uint8']),
    helper.make_node('DequantizeLinear', ['y_uint8', 'y_scale', 'y_zero'], ['out']),
  ]
  graph = helper.make_graph(
    nodes,
    'saturating_conv',
    [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, channels, 1, 1])],
    [helper.make_tensor_value_info('out', TensorProto.FLOAT, [1, 1, 1, 1])],
    [numpy_helper.from_array(value, name) for name, value in constants.items()],
  )
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 21)])
  model.ir_version = 10
  return model.SerializeToString()


@pytest.mark.full  # The onnx extra, which the full tier installs.
def test_reference_arithmetic_adds_the_int8_products_exactly(tmp_path):
  """Where every pair of products overflows int16 (2 * 255 * 127 > 32767),
  the reference session returns the exact sum on the output grid; the fused
  kernels may saturate (AVX2 without VNNI) or not (VNNI, AMX)."""
  pytest.importorskip('onnxruntime')
  pytest.importorskip('onnx')
  channels, output_scale = 8, 2000.0
  path = tmp_path / 'saturating_conv.onnx'
  path.write_bytes(saturating_conv(channels, output_scale))
  images = np.full((1, channels, 1, 1), 255, np.float32)

  def output(fused: bool) -> float:
    return float(int8.session(str(path), fused).run(None, {'x': images})[0].item())

  exact = np.round(255 * 127 * channels / output_scale) * output_scale
  # Each pair of products capped at 32767 before the int32 sum.
  saturated = np.round(32767 * channels / 2 / output_scale) * output_scale
  assert output(fused=False) == exact
  assert output(fused=True) in (exact, saturated)


def test_the_int8_options_need_the_int8_format(tiny_run):
  from acnet_jax.errors import InputError

  with pytest.raises(InputError, match='are for --format=onnx-int8'):
    export.export_run(str(tiny_run), formats='stablehlo', int8_layers=True)

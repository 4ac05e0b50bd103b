"""Quantization-aware fine-tuning: the fake int8 rounds as ONNX Runtime's
quantizer will (its own scale formulas), the fine-tuning learns, and the
command reports the int8 top-1 without and with it on the same images."""

from __future__ import annotations

import dataclasses
import json
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from acnet_jax.training import workdir as runs
from tests.conftest import TINY_RUN_STEPS

pytestmark = [pytest.mark.full, pytest.mark.needs_onnx]  # qwix comes with the onnx extra.


class ConvThenDense(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(5, (3, 3), padding=1, bias_init=nn.initializers.normal(0.1))(x)
    return nn.Dense(4)(x.reshape(len(x), -1))


def onnx_runtime_rounded(
  x: np.ndarray, axis: int | None, symmetric: bool, reduce_range: bool = False
) -> np.ndarray:
  """x through ONNX Runtime's QuantizeLinear/DequantizeLinear, with the scale and
  zero point its static quantizer computes: int8 symmetric per `axis` (weights;
  7 bits with `reduce_range`), uint8 from the tensor's min and max (activations)."""
  from onnxruntime.quantization import quant_utils

  qtype = quant_utils.TensorProto.INT8 if symmetric else quant_utils.TensorProto.UINT8
  qmin, qmax = quant_utils.get_qmin_qmax_for_qType(qtype, reduce_range, symmetric)
  axes = tuple(a for a in range(x.ndim) if a != axis)
  low, high = x.min(axis=axes, keepdims=True), x.max(axis=axes, keepdims=True)
  pairs = [  # Its function takes one range at a time: (zero point, scale).
    quant_utils.compute_scale_zp(np.float32(lo), np.float32(hi), qmin, qmax, symmetric)
    for lo, hi in zip(low.ravel(), high.ravel())
  ]
  zero_point, scale = (
    np.array([float(pair[k]) for pair in pairs], np.float32).reshape(low.shape) for k in (0, 1)
  )
  return (np.clip(np.round(x / scale) + zero_point, qmin, qmax) - zero_point) * scale


@pytest.mark.parametrize('reduce_range', [False, True])
def test_fake_int8_rounds_as_onnx_runtime_quantizes(reduce_range):
  pytest.importorskip('qwix')
  pytest.importorskip('onnxruntime')
  from acnet_jax.training import qat

  model = ConvThenDense()
  rng = np.random.default_rng(0)
  x = (rng.normal(size=(4, 6, 6, 3)) + 0.3).astype(np.float32)
  variables = model.init(jax.random.key(0), x)
  state = qat.create_state(
    qat.fake_quantized(model, reduce_range),
    {**variables, 'batch_stats': {}},
    optax.sgd(0.1),
    x.shape[1:],
  )
  logits, updates = state.apply_fn(
    {'params': state.params, qat.QUANT_STATS: state.quant_stats}, x, mutable=[qat.QUANT_STATS]
  )

  params = jax.tree.map(np.asarray, variables['params'])
  conv, dense = params['Conv_0'], params['Dense_0']
  hidden = (
    jax.lax.conv_general_dilated(
      onnx_runtime_rounded(x, None, symmetric=False),
      onnx_runtime_rounded(conv['kernel'], 3, symmetric=True, reduce_range=reduce_range),
      (1, 1),
      [(1, 1), (1, 1)],
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    )
    + conv['bias']
  )
  hidden = np.asarray(hidden).reshape(len(x), -1)
  expected = (
    onnx_runtime_rounded(hidden, None, symmetric=False)
    @ onnx_runtime_rounded(dense['kernel'], 1, symmetric=True, reduce_range=reduce_range)
    + dense['bias']
  )
  unrounded = model.apply(variables, x)
  scale = np.max(np.abs(expected))
  np.testing.assert_allclose(logits, expected, atol=1e-5 * scale)
  # The rounding shows: without it the logits differ far beyond float's rounding.
  assert np.max(np.abs(unrounded - expected)) > 1e-3 * scale

  # The ranges are running means over the batches seen.
  ranges = updates[qat.QUANT_STATS]['Conv_0']['conv_general_dilated0_lhs']
  assert int(ranges['count']) == 1
  np.testing.assert_allclose(ranges['sum_of_max'].ravel(), [x.max()])
  np.testing.assert_allclose(ranges['sum_of_min'].ravel(), [x.min()])


def outputs_and_grads(model, variables, x, cotangent):
  """The fake-int8 model's outputs on x (fresh ranges: x's own) and the
  gradient of their dot product with `cotangent` by its parameters."""
  from acnet_jax.training import qat

  state = qat.create_state(model, {**variables, 'batch_stats': {}}, optax.sgd(0.1), x.shape[1:])

  def loss(params):
    y, _ = model.apply(
      {'params': params, qat.QUANT_STATS: state.quant_stats}, x, mutable=[qat.QUANT_STATS]
    )
    return jnp.sum(y * cotangent), y

  (_, y), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
  return np.asarray(y), jax.tree.map(np.asarray, grads)


class TwoConvs(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    x = nn.relu(nn.Conv(6, (3, 3), padding=1)(x))
    x = nn.Conv(4, (3, 3), strides=2, padding=1)(x)
    return nn.Dense(3)(x.reshape(len(x), -1))


@pytest.mark.parametrize('reduce_range', [False, True])
def test_the_float_convs_give_qwixs_integer_convs_values_and_gradients(reduce_range):
  """OnnxRuntimeRounding computes each conv in float on the rounded operands,
  qwix's own QtProvider (given the same one range per input) in integers:
  the same logits and straight-through gradients, to float32's rounding."""
  qwix = pytest.importorskip('qwix')
  from acnet_jax.training import qat

  class IntegerConvs(qwix.QtProvider):
    def _create_conv_general_qt_config(self, *args, **kwargs):
      config = super()._create_conv_general_qt_config(*args, **kwargs)
      return dataclasses.replace(config, lhs_disable_channelwise_axes=True)

  rng = np.random.default_rng(1)
  x = (rng.normal(size=(4, 8, 8, 3)) + 0.3).astype(np.float32)
  cotangent = rng.normal(size=(4, 3)).astype(np.float32)
  variables = TwoConvs().init(jax.random.key(0), x)

  def with_provider(provider):
    model = qwix.quantize_model(TwoConvs(), provider)
    return outputs_and_grads(model, variables, x, cotangent)

  logits, grads = with_provider(qat.OnnxRuntimeRounding(qat.rules(reduce_range)))
  expected_logits, expected_grads = with_provider(IntegerConvs(qat.rules(reduce_range)))
  np.testing.assert_allclose(logits, expected_logits, atol=1e-5 * np.max(np.abs(expected_logits)))
  for got, expected in zip(jax.tree.leaves(grads), jax.tree.leaves(expected_grads), strict=True):
    np.testing.assert_allclose(got, expected, atol=1e-5 * np.max(np.abs(expected)))


class Depthwise(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    return nn.Conv(4, (3, 3), padding=1, feature_group_count=4)(x)


def test_a_depthwise_conv_rounds_and_passes_gradients_straight_through():
  """MobileNet's depthwise convs, whose gradient qwix's own integer conv
  cannot compute (its backward mixes up the groups): the logits are the conv
  of ONNX Runtime's rounded operands, the kernel's gradient that conv's
  gradient at them."""
  pytest.importorskip('qwix')
  pytest.importorskip('onnxruntime')
  from acnet_jax.training import qat

  rng = np.random.default_rng(2)
  x = (rng.normal(size=(3, 6, 6, 4)) + 0.3).astype(np.float32)
  cotangent = rng.normal(size=(3, 6, 6, 4)).astype(np.float32)
  variables = Depthwise().init(jax.random.key(0), x)
  y, grads = outputs_and_grads(qat.fake_quantized(Depthwise()), variables, x, cotangent)
  params = jax.tree.map(np.asarray, variables['params'])['Conv_0']

  def conv(kernel):
    return jax.lax.conv_general_dilated(
      onnx_runtime_rounded(x, None, symmetric=False),
      kernel,
      (1, 1),
      [(1, 1), (1, 1)],
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      feature_group_count=4,
    )

  expected, pullback = jax.vjp(conv, onnx_runtime_rounded(params['kernel'], 3, symmetric=True))
  expected = np.asarray(expected) + params['bias']
  np.testing.assert_allclose(y, expected, atol=1e-5 * np.max(np.abs(expected)))
  (expected_grad,) = pullback(cotangent)
  np.testing.assert_allclose(
    grads['Conv_0']['kernel'], expected_grad, atol=1e-5 * np.max(np.abs(expected_grad))
  )
  np.testing.assert_allclose(grads['Conv_0']['bias'], cotangent.sum(axis=(0, 1, 2)), rtol=1e-5)


def training_loss(model, state, config, feed) -> float:
  """Mean loss of the fake-int8 model on the run's training images, unaugmented."""
  from acnet_jax.data import memory
  from acnet_jax.data.on_device import normalize
  from acnet_jax.training import steps

  split = memory.load_split(config, feed.info, 'train')
  x = normalize(jnp.asarray(split.images), config.pixel_mean, config.pixel_std)
  variables = {
    'params': state.params,
    'batch_stats': state.batch_stats,
    'quant_stats': state.quant_stats,
  }
  logits = model.apply(variables, x, train=False)
  return float(steps.cross_entropy(logits, jnp.asarray(split.labels)).mean())


def is_range(node) -> bool:
  return isinstance(node, dict) and 'count' in node


def test_fine_tuning_lowers_the_fake_int8_models_training_loss(tiny_run):
  pytest.importorskip('qwix')
  from acnet_jax.fusion import fuse_params
  from acnet_jax.training import qat, trainer

  run = runs.read_run(str(tiny_run))
  config = qat.fine_tune_config(run.config, epochs=8, learning_rate=0.1)
  config.augment = False  # Random labels: learnable only as the same images again.
  state = runs.restore_step_or_newest(str(tiny_run), run.config, None, run.input_shape)
  params, batch_stats = fuse_params(state.params, state.batch_stats)
  tuning = trainer.Trainer(config, trainer.create_mesh())
  updates = qat.fine_tune(
    config,
    tuning.deploy_model,
    {'params': params, 'batch_stats': batch_stats},
    tuning.feed,
    tuning.sharder,
  )
  count = 0
  for state, _ in updates:
    count += 1
  assert count == tuning.total_steps == 32
  counts = [int(ranges['count']) for ranges in jax.tree.leaves(state.quant_stats, is_leaf=is_range)]
  assert counts and set(counts) == {32}  # Every conv and dense input saw every batch.
  # The fused and the fine-tuned weights, both under the activation ranges
  # fine-tuning ended with: the difference is what the weight updates did.
  model = qat.fake_quantized(tuning.deploy_model)
  before = training_loss(model, state.replace(params=params), config, tuning.feed)
  after = training_loss(model, state, config, tuning.feed)
  assert after < 0.98 * before, (before, after)


def copied_run(tiny_run, tmp_path):
  """A copy of the tiny run to write into, without its export."""
  workdir = tmp_path / 'run'
  shutil.copytree(tiny_run, workdir, ignore=shutil.ignore_patterns('export'))
  return workdir


def test_the_command_reports_int8_without_and_with_fine_tuning(tiny_run, tmp_path):
  pytest.importorskip('qwix')
  pytest.importorskip('onnxruntime')
  pytest.importorskip('jax2onnx')
  from acnet_jax import qat as command
  from acnet_jax.deploy import int8, run_images

  workdir = copied_run(tiny_run, tmp_path)
  report = command.qat_run(str(workdir), epochs=1, learning_rate=0.01, calibration_images=16)

  directory = workdir / command.QAT_DIR
  assert report == json.loads((directory / command.REPORT_FILE).read_text())
  after = json.loads((directory / int8.REPORT_FILE).read_text())
  assert {'model.onnx', 'model_int8.onnx', 'model.json'} <= {p.name for p in directory.iterdir()}
  assert report['fine_tuned_int8_top1'] == after['int8_top1']
  assert report['fine_tuned_float_top1'] == after['float_top1']
  assert report['fine_tuned_drop'] == pytest.approx(report['float_top1'] - after['int8_top1'])
  assert report['drop'] == pytest.approx(report['float_top1'] - report['int8_top1'])
  assert report['fine_tuned_reference_int8_top1'] == after['reference_int8_top1']
  assert report['fine_tuned_reference_drop'] == pytest.approx(
    report['float_top1'] - after['reference_int8_top1']
  )
  assert report['fine_tuning']['fake_int8']
  # Without fine-tuning, the fused model's float top-1 is the run's own.
  evaluation = json.loads((workdir / 'eval.json').read_text())
  assert report['step'] == evaluation['step'] == TINY_RUN_STEPS
  assert report['float_top1'] == pytest.approx(evaluation['fused_top1'], abs=1 / 16)
  # Both int8 models calibrated on the same stated training images.
  config = runs.read_run(str(workdir)).config
  assert report['calibration'] == after['calibration']
  assert report['calibration']['positions'] == (run_images.calibration_indices(config, 16).tolist())
  assert report['fine_tuning']['steps'] == TINY_RUN_STEPS


def test_the_command_line_runs_the_control_without_rounding_on_7_bits(tiny_run, tmp_path):
  pytest.importorskip('qwix')
  pytest.importorskip('onnxruntime')
  pytest.importorskip('jax2onnx')
  from acnet_jax import qat as command
  from tests.support.runs import run_command

  workdir = copied_run(tiny_run, tmp_path)
  completed = run_command(
    'qat',
    f'--workdir={workdir}',
    '--epochs=1',
    '--calibration_images=16',
    '--nofake_int8',
    '--reduce_range',
  )
  assert completed.returncode == 0, completed.stderr[-3000:]
  directory = workdir / f'{command.CONTROL_DIR}{command.REDUCE_RANGE_SUFFIX}'
  assert str(directory / command.REPORT_FILE) in completed.stdout
  assert sorted(p.name for p in workdir.iterdir() if p.name.startswith(('qat', 'float'))) == [
    directory.name
  ]
  report = json.loads((directory / command.REPORT_FILE).read_text())
  assert not report['fine_tuning']['fake_int8'] and report['fine_tuning']['rounding'] is None
  assert report['calibration']['images'] == 16
  # Exported with 7-bit weights, as export --reduce_range.
  assert report['fine_tuning']['reduce_range']
  exported = json.loads((directory / 'eval_int8.json').read_text())
  assert exported['quantization']['reduce_range']


@pytest.mark.parametrize(
  'flags, message',
  [
    ({'epochs': 0}, 'at least one epoch'),
    ({'learning_rate': 0.0}, 'positive rate'),
  ],
)
def test_bad_arguments_stop_before_any_work(tmp_path, flags, message):
  pytest.importorskip('qwix')
  from acnet_jax import qat as command
  from acnet_jax.errors import InputError

  with pytest.raises(InputError, match=message):
    command.qat_run(str(tmp_path / 'nothing here'), **flags)

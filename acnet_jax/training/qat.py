"""Quantization-aware fine-tuning of the fused deploy model (qwix; the onnx
extra), so that its int8 post-training quantization (deploy/int8.py) costs less.

The deploy model's convs and dense layers compute on int8-rounded inputs and
weights in the forward pass, rounded as ONNX Runtime's quantizer will round
them: weights symmetric with one scale per output channel, their inputs with
one static min-max range per tensor (the running mean of each batch's range).
Gradients pass the rounding straight through (qwix's QtProvider). The model
trains in eval mode, as it will be deployed: no dropout, and the BNs a fused
model keeps (WRN's pre-activation BNs) use their running statistics.

The float weights it leaves are exported and quantized as any run's.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
import qwix

# qwix's own calibration and rounding of conv operands (its internals: the onnx extra pins 0.1.8).
from qwix._src.core import conv_general, conv_general_qt, numerics, qarray

from acnet_jax.data import feeds
from acnet_jax.training import optim, steps

QUANT_STATS = 'quant_stats'  # qwix's collection of the activations' running ranges.
# qwix scales symmetric int8 to max|w| / 127.5, ONNX Runtime to max|w| / 127
# (max|w| / 64 with reduce_range's 7 bits): widening qwix's range by 127.5 / 127
# (127.5 / 64) puts its grid on ONNX Runtime's.
ONNX_RUNTIME_WEIGHT_STEPS = {False: 127, True: 64}  # By reduce_range.


def rules(reduce_range: bool = False) -> tuple[qwix.QtRule, ...]:
  """ONNX Runtime's static quantizer as qwix rules (8-bit weights, or 7 with `reduce_range`)."""
  widening = 127.5 / ONNX_RUNTIME_WEIGHT_STEPS[reduce_range]
  return (
    qwix.QtRule(
      module_path='.*',
      weight_qtype='int8',
      weight_calibration_method=f'absmax,{widening!r}',
      act_qtype='int8',
      act_calibration_method='minmax',
      act_static_scale=True,
      # One range for the whole batch, as ONNX Runtime's MinMax takes the range
      # of all it sees (qwix's own default averages each image's range).
      additional_qt_config={'lhs_disable_channelwise_axes': True},
    ),
  )


def rounding(reduce_range: bool = False) -> str:
  """What `rules` do, for the report."""
  steps = ONNX_RUNTIME_WEIGHT_STEPS[reduce_range]
  return (
    f'qwix QtProvider: conv and dense weights int8 symmetric (-{steps}..{steps}), one scale '
    f'per output channel (max|w| / {steps}); their inputs int8 from one min-max range per '
    'tensor (the running mean of the batch ranges), straight-through gradients'
  )


class OnnxRuntimeRounding(qwix.QtProvider):
  """qwix's QtProvider with two changes to its convs: `rules`' one range per
  input tensor (qwix 0.1.8 applies `additional_qt_config` to dense layers
  only), and the conv computed in float on the rounded values (fake
  quantization, as PyTorch's and TensorFlow's QAT do) instead of qwix's
  integer conv, which XLA's CPU backend runs more slowly (about half the
  speed for a fused ResNet-20 step on 2 CPU cores) and whose backward
  fails on grouped convs (MobileNet's depthwise ones). The values are the
  same up to float32 rounding, and so are the straight-through gradients:
  each operand's gradient goes to the conv of the other's rounded value."""

  def _create_conv_general_qt_config(self, *args, **kwargs):
    config = super()._create_conv_general_qt_config(*args, **kwargs)
    return dataclasses.replace(config, lhs_disable_channelwise_axes=True)

  def conv_general_dilated(
    self,
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    batch_group_count=1,
    precision=None,
    preferred_element_type=None,
    out_sharding=None,
  ) -> jax.Array:
    conv = functools.partial(
      jax.lax.conv_general_dilated,
      window_strides=window_strides,
      padding=padding,
      lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count,
      batch_group_count=batch_group_count,
      precision=precision,
      preferred_element_type=preferred_element_type,
      out_sharding=out_sharding,
    )
    rule, op_id = self._get_current_rule_and_op_id('conv_general_dilated')
    if rule is None or rule.weight_qtype is None:
      return conv(lhs, rhs)
    config = self._create_conv_general_qt_config(rule, op_id, lhs, rhs)
    dimensions = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    return conv(
      rounded(lhs, config, dimensions, for_lhs=True),
      rounded(rhs, config, dimensions, for_lhs=False),
    )


def rounded(
  operand: jax.Array,
  config: conv_general_qt.ConvGeneralQtConfig,
  dimensions: jax.lax.ConvDimensionNumbers,
  for_lhs: bool,
) -> jax.Array:
  """A conv operand on the int8 grid qwix's conv_general_qt_fwd puts it on
  (the same calibration, running ranges and scale), as float, with a
  straight-through gradient."""
  qtype = config.lhs_qtype if for_lhs else config.rhs_qtype
  if not (qtype and numerics.should_quantize(operand.dtype)):
    return operand
  how = conv_general.get_how_to_quantize(
    dimension_numbers=dimensions,
    for_lhs=for_lhs,
    qtype=qtype,
    calibration_method=config.lhs_calibration_method if for_lhs else config.rhs_calibration_method,
  )
  if config.lhs_disable_channelwise_axes if for_lhs else config.rhs_disable_channelwise_axes:
    how = dataclasses.replace(how, channelwise_axes=[])
  calibration = qarray.calibrate(operand, how)
  collect = config.lhs_collect_quant_stat if for_lhs else config.rhs_collect_quant_stat
  if collect:
    calibration = collect(calibration)
  scale, zero_point = qarray.compute_scale_zero_point(calibration, qtype)
  grid = qarray.dequantize(qarray.quantize_with_scale_zero_point(operand, qtype, scale, zero_point))
  # Exactly the grid's values forward, the identity backward.
  return operand - jax.lax.stop_gradient(operand) + jax.lax.stop_gradient(grid)


class QatState(steps.TrainState):
  quant_stats: Any


def fake_quantized(deploy_model: nn.Module, reduce_range: bool = False) -> nn.Module:
  """The deploy model with int8 rounding in its convs and dense layers (7-bit
  weights with `reduce_range`)."""
  return qwix.quantize_model(deploy_model, OnnxRuntimeRounding(rules(reduce_range)))


def fine_tune_config(
  config: ml_collections.ConfigDict, epochs: int, learning_rate: float
) -> ml_collections.ConfigDict:
  """The run's recipe (optimizer, weight decay, bias rate, data, seed) at
  `learning_rate`, cosine to 0 over `epochs`, without warmup."""
  tuned = ml_collections.ConfigDict(config.to_dict())
  tuned.update(
    num_epochs=epochs,
    learning_rate=learning_rate,
    reference_batch_size=0,
    lr_schedule='cosine',
    warmup_epochs=0,
  )
  return tuned


def create_state(
  model: nn.Module,
  deploy_variables: dict[str, Any],
  optimizer: optax.GradientTransformation,
  image_shape: tuple[int, ...],
) -> QatState:
  """Starts from the fused variables, with empty activation ranges (none
  for a model without rounding)."""
  fresh = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *image_shape)), train=False)
  quant_stats = jax.tree.map(
    lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), fresh.get(QUANT_STATS, {})
  )
  return QatState.create(
    apply_fn=model.apply,
    params=deploy_variables['params'],
    batch_stats=deploy_variables['batch_stats'],
    quant_stats=quant_stats,
    tx=optimizer,
  )


def train_step(
  state: QatState, inputs: feeds.Inputs, *, feed: feeds.Feed, schedule: optax.Schedule
) -> tuple[QatState, dict[str, jax.Array]]:
  """One SGD step through the int8 rounding on the run's augmented batch of
  this step; the step's batch also moves the activation ranges."""
  x, y = feed.prepare_train(inputs, state.step)

  def loss_fn(params):
    variables = {'params': params, 'batch_stats': state.batch_stats, QUANT_STATS: state.quant_stats}
    logits, updates = state.apply_fn(variables, x, train=False, mutable=[QUANT_STATS])
    return steps.cross_entropy(logits, y).mean(), (logits, updates.get(QUANT_STATS, {}))

  (loss, (logits, quant_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads, quant_stats=quant_stats)
  return state, steps.step_metrics(loss, logits, y, schedule(state.step - 1))


def fine_tune(
  config: ml_collections.ConfigDict,
  deploy_model: nn.Module,
  deploy_variables: dict[str, Any],
  feed: feeds.Feed,
  sharder: feeds.Sharder,
  fake_int8: bool = True,
  reduce_range: bool = False,
) -> Iterator[tuple[QatState, dict[str, jax.Array]]]:
  """Yields the state and metrics after each of the config's steps (config
  from `fine_tune_config`); the batches are those of the run's first steps.
  `fake_int8=False` fine-tunes the same way without the rounding: the control
  that tells what the rounding wins from what more training wins.
  `reduce_range` rounds the weights to 7 bits, as `export --reduce_range`."""
  steps_per_epoch = feed.num_train // config.batch_size
  schedule = optim.create_lr_schedule(config, steps_per_epoch)
  model = fake_quantized(deploy_model, reduce_range) if fake_int8 else deploy_model
  state = sharder.replicate(
    create_state(
      model, deploy_variables, optim.create_optimizer(config, schedule), feed.image_shape
    )
  )
  step = jax.jit(functools.partial(train_step, feed=feed, schedule=schedule), donate_argnums=0)
  for index in range(config.num_epochs * steps_per_epoch):
    state, metrics = step(state, feed.train_inputs(index, steps_per_epoch))
    yield state, metrics

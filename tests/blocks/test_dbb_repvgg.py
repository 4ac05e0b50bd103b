"""DBB and RepVGG: in eval mode each equals the one conv fusion makes of it,
at every border, stride, kernel size and grouping."""

from __future__ import annotations

import functools
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acnet_jax.blocks import dbb
from acnet_jax.blocks.dbb import DBB
from acnet_jax.blocks.repvgg import IDENTITY_SUM_BN, SUM_BN, RepVGG
from acnet_jax.errors import InputError
from acnet_jax.fusion import FusionError, block_to_conv
from tests.support.numerics import (
  BLOCK_RTOL,
  fused_conv_output,
  max_relative_error,
  randomize_batch_norm,
)
from tests.support.numerics import init_block as init

QUANTIZATION_FRIENDLY = 'quantization-friendly repvgg'
BLOCKS = {
  'dbb': DBB,
  'repvgg': RepVGG,
  QUANTIZATION_FRIENDLY: functools.partial(RepVGG, quantization_friendly=True),
}
# (input channels, output channels, groups): dense and wider; grouped with
# equal widths (RepVGG's identity branch at stride 1); depthwise (MobileNet's).
GROUPINGS = {'dense': (8, 12, 1), 'grouped': (8, 8, 2), 'depthwise': (8, 8, 8)}


def random_variables(block: nn.Module, x: jax.Array) -> dict:
  """Torch-style init, then every BN and the DBB's identity-based 1x1 kernel
  (zero at init) moved at random, so that no term of the fusion can hide."""
  variables = randomize_batch_norm(init(block, x), 1)
  params = dict(variables['params'])
  if 'idconv' in ''.join(params):
    delta = params['1x1_kxk_idconv1']['kernel']
    params['1x1_kxk_idconv1'] = {'kernel': 0.2 * jax.random.normal(jax.random.key(2), delta.shape)}
  return {**variables, 'params': params}


# The fast tier: each kind 3x3 in every grouping, and 5x5 strided; the full
# tier every combination (the fast tier stays under 5 minutes).
FAST_BLOCK_CASES = {
  *itertools.product(['dbb', 'repvgg'], [3], [1], GROUPINGS),
  *itertools.product(['dbb', 'repvgg'], [5], [2], ['dense']),
  # With the identity in the sum, and at equal widths without it (stride 2).
  (QUANTIZATION_FRIENDLY, 3, 1, 'grouped'),
  (QUANTIZATION_FRIENDLY, 3, 2, 'depthwise'),
}
BLOCK_CASES = [
  pytest.param(*case, marks=() if case in FAST_BLOCK_CASES else pytest.mark.full)
  for case in itertools.product(BLOCKS, [3, 5], [1, 2], GROUPINGS)
]


@pytest.mark.parametrize('kind,kernel_size,strides,grouping', BLOCK_CASES)
def test_block_equals_fused_conv_in_eval(kind, kernel_size, strides, grouping):
  channels_in, features, groups = GROUPINGS[grouping]
  block = BLOCKS[kind](features, kernel_size, strides=strides, feature_group_count=groups)
  # Even and odd sides: stride 2 drops the last row on one, not on the other.
  inputs = [
    jax.random.normal(jax.random.key(7), (2, size, size + 3, channels_in)) for size in (16, 17)
  ]
  variables = random_variables(block, inputs[0])

  outputs = jax.jit(
    lambda v, xs: [(block.apply(v, x, train=False), fused_conv_output(block, v, x)) for x in xs]
  )(variables, inputs)
  for expected, actual in outputs:
    assert actual.shape == expected.shape
    assert max_relative_error(actual, expected) <= BLOCK_RTOL


@pytest.mark.full  # The fast tier checks the pad against the BN of zero (below).
def test_dbb_pads_with_the_bn_of_zero_and_without_it_the_borders_differ(monkeypatch):
  """BNAndPad is what makes the 1x1-then-KxK and avg branches one conv at the
  image borders: padded with zeros instead, only the interior still agrees."""
  block = DBB(12, 5)
  x = jax.random.normal(jax.random.key(3), (2, 13, 13, 8))
  variables = random_variables(block, x)
  # A new jit each time: one jitted function would keep its first trace.
  eval_output = lambda: jax.jit(lambda v, x: block.apply(v, x, train=False))(variables, x)
  fused = jax.jit(lambda v, x: fused_conv_output(block, v, x))(variables, x)
  assert max_relative_error(eval_output(), fused) <= BLOCK_RTOL

  def batch_norm_and_zero_pad(x, name, *, pad, train, dtype):
    y = dbb.batch_norm(name, dtype=dtype)(x, use_running_average=not train)
    return jnp.pad(y, ((0, 0), (pad, pad), (pad, pad), (0, 0)))

  monkeypatch.setattr(dbb, 'batch_norm_and_pad', batch_norm_and_zero_pad)
  zero_padded = eval_output()
  inner = (slice(None), slice(2, -2), slice(2, -2))  # The pixels whose 5x5 window is inside.
  assert max_relative_error(zero_padded[inner], fused[inner]) <= BLOCK_RTOL
  assert max_relative_error(zero_padded, fused) > 0.05


def test_dbb_branches_follow_the_authors():
  x = jnp.zeros((1, 8, 8, 8))
  dense = init(DBB(12, 3), x)
  assert set(dense['params']) == {
    'origin',
    'origin_bn',
    '1x1',
    '1x1_bn',
    'avg_conv',
    'avg_conv_bn',
    'avg_bn',
    '1x1_kxk_idconv1',
    '1x1_kxk_bn1',
    '1x1_kxk_conv2',
    '1x1_kxk_bn2',
  }
  # The 1x1 before the KxK conv starts as the identity: its parameter is the difference.
  np.testing.assert_array_equal(dense['params']['1x1_kxk_idconv1']['kernel'], 0)
  depthwise = init(DBB(8, 3, feature_group_count=8), x)
  assert set(depthwise['params']) == {
    'origin',
    'origin_bn',
    'avg_bn',
    '1x1_kxk_conv1',
    '1x1_kxk_bn1',
    '1x1_kxk_conv2',
    '1x1_kxk_bn2',
  }
  assert depthwise['params']['1x1_kxk_conv1']['kernel'].shape == (1, 1, 1, 16)  # 2x wide.


class BatchNormAndPad(nn.Module):
  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    return dbb.batch_norm_and_pad(x, 'bn', pad=1, train=train, dtype=jnp.float32)


def test_dbb_pad_is_the_bn_of_zero_and_a_constant_for_the_gradient():
  """As the authors' BNAndPadLayer: running statistics, detached scale and bias."""
  layer = BatchNormAndPad()
  x = jax.random.normal(jax.random.key(4), (2, 4, 4, 3))
  variables = randomize_batch_norm(init(layer, x), 1)
  bn, stats = variables['params']['bn'], variables['batch_stats']['bn']
  zero_output = bn['bias'] - stats['mean'] * bn['scale'] / jnp.sqrt(stats['var'] + 1e-5)

  def border(params, train):
    y = layer.apply({**variables, 'params': params}, x, train=train, mutable=['batch_stats'])[0]
    assert y.shape == (2, 6, 6, 3)
    return y[:, 0]  # The first row: all padding.

  np.testing.assert_allclose(
    border(variables['params'], False),
    np.broadcast_to(zero_output, (2, 6, 3)),
    rtol=1e-6,
    atol=1e-6,
  )
  grads = jax.grad(lambda p: jnp.sum(border(p, True) ** 2))(variables['params'])
  assert not any(jnp.any(g != 0) for g in jax.tree.leaves(grads))


def test_repvgg_identity_branch_only_where_widths_match_at_stride_1():
  x = jnp.zeros((1, 8, 8, 8))
  names = lambda block: set(init(block, x)['params'])
  assert 'identity_bn' in names(RepVGG(8, 3))
  assert 'identity_bn' not in names(RepVGG(8, 3, strides=2))
  assert 'identity_bn' not in names(RepVGG(16, 3))


def test_the_quantization_friendly_block_has_one_bn_after_the_sum_named_by_its_identity():
  x = jnp.zeros((1, 8, 8, 8))
  names = lambda block: set(init(block, x)['batch_stats'])
  assert names(RepVGG(8, 3, quantization_friendly=True)) == {'dense_bn', IDENTITY_SUM_BN}
  assert names(RepVGG(8, 3, strides=2, quantization_friendly=True)) == {'dense_bn', SUM_BN}
  assert names(RepVGG(16, 3, quantization_friendly=True)) == {'dense_bn', SUM_BN}


@pytest.mark.parametrize('block', [DBB(8, 4), RepVGG(8, 2), DBB(4, 3, feature_group_count=4)])
def test_blocks_refuse_what_they_cannot_fuse(block):
  with pytest.raises(InputError, match='odd kernel size|as many input as output'):
    block.init(jax.random.key(0, impl='rbg'), jnp.zeros((1, 8, 8, 8)), train=False)


@pytest.mark.parametrize('kind,skeleton', [('dbb', 'origin'), ('repvgg', 'dense')])
def test_a_block_without_its_skeleton_is_refused_not_passed_through(kind, skeleton):
  block = BLOCKS[kind](8, 3)
  variables = init(block, jnp.zeros((1, 6, 6, 8)))
  params = {k: v for k, v in variables['params'].items() if k != skeleton}
  with pytest.raises(FusionError, match=f"at 'block' has no '{skeleton}' kernel"):
    block_to_conv(params, variables['batch_stats'], 'block')

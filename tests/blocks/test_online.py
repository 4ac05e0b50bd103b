"""The online blocks: one conv of a kernel built in the step equals the same
block computed branch by branch (values, batch statistics, gradients), fuses
exactly, keeps the offline names, and the ACB without branch BNs is that
block without scales."""

from __future__ import annotations

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acnet_jax.blocks.acb import ACB, OnlineACB
from acnet_jax.blocks.dbb import DBB, OnlineDBB
from acnet_jax.blocks.primitives import BN_EPSILON, BN_MOMENTUM
from acnet_jax.blocks.repvgg import OnlineRepVGG, RepVGG
from acnet_jax.fusion import FusionError, block_to_conv
from tests.support.numerics import (
  BLOCK_RTOL,
  TRAIN_GRADIENT_RTOL,
  eval_and_fused_outputs,
  init_block,
  max_relative_error,
  randomize_batch_norm,
)

ONLINE = {'acnet': OnlineACB, 'dbb': OnlineDBB, 'repvgg': OnlineRepVGG}
OFFLINE = {'acnet': ACB, 'dbb': DBB, 'repvgg': RepVGG}
# (input channels, output channels, groups): equal widths, where RepVGG has its
# identity branch at stride 1; and depthwise (MobileNet's), where the DBB pools
# its input and widens its 1x1-then-KxK branch.
GROUPINGS = {'dense': (8, 8, 1), 'depthwise': (8, 8, 8)}


def conv(x: jax.Array, kernel: jax.Array, strides: int, groups: int) -> jax.Array:
  """A conv of its own, padded K//2 on each side of each axis."""
  padding = [(k // 2, k // 2) for k in kernel.shape[:2]]
  return jax.lax.conv_general_dilated(
    x,
    kernel,
    (strides, strides),
    padding,
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    feature_group_count=groups,
  )


def branches_one_by_one(
  kind: str, params: dict, x: jax.Array, size: int, strides: int, groups: int
) -> jax.Array:
  """sum_b s_b * branch_b(x), each branch by its own ops in the order its
  block's paper draws them (convs, pooling, the input itself): no kernel algebra."""
  kernel = lambda name: params[name]['kernel']
  scaled = lambda branch, y: params[f'{branch}_scale'] * y
  if kind == 'acnet':
    return sum(scaled(b, conv(x, kernel(b), strides, groups)) for b in ('square', 'ver', 'hor'))
  if kind == 'repvgg':
    y = scaled('dense', conv(x, kernel('dense'), strides, groups)) + scaled(
      '1x1', conv(x, kernel('1x1'), strides, groups)
    )
    return y + scaled('identity', x) if 'identity_scale' in params else y
  pool = lambda y: nn.avg_pool(
    y, (size, size), (strides, strides), padding=[(size // 2, size // 2)] * 2
  )
  if '1x1_kxk_idconv1' in params:  # The identity plus its learned difference.
    first = x + conv(x, kernel('1x1_kxk_idconv1'), 1, groups)
  else:
    first = conv(x, kernel('1x1_kxk_conv1'), 1, groups)
  y = scaled('origin', conv(x, kernel('origin'), strides, groups)) + scaled(
    '1x1_kxk', conv(first, kernel('1x1_kxk_conv2'), strides, groups)
  )
  if 'avg_conv' not in params:  # Depthwise: the input itself is pooled.
    return y + scaled('avg', pool(x))
  return (
    y
    + scaled('avg', pool(conv(x, kernel('avg_conv'), 1, groups)))
    + scaled('1x1', conv(x, kernel('1x1'), strides, groups))
  )


def batch_norm_in_train_mode(z: jax.Array, affine: dict, stats: dict) -> tuple[jax.Array, dict]:
  """BN by its definition: this batch's moments; the running ones updated."""
  mean, var = z.mean(axis=(0, 1, 2)), z.var(axis=(0, 1, 2))
  y = (z - mean) / jnp.sqrt(var + BN_EPSILON) * affine['scale'] + affine['bias']
  update = lambda old, new: BN_MOMENTUM * old + (1 - BN_MOMENTUM) * new
  return y, {'mean': update(stats['mean'], mean), 'var': update(stats['var'], var)}


def random_online_variables(block: nn.Module, x: jax.Array) -> dict:
  """Torch-style init, then every scale, BN and the DBB's identity-based 1x1
  kernel (zero at init) moved at random: no term of the kernel can hide."""
  variables = randomize_batch_norm(init_block(block, x), 1)
  params = dict(variables['params'])
  if '1x1_kxk_idconv1' in params:
    delta = params['1x1_kxk_idconv1']['kernel']
    params['1x1_kxk_idconv1'] = {'kernel': 0.2 * jax.random.normal(jax.random.key(2), delta.shape)}
  return {**variables, 'params': params}


def sin_loss(y: jax.Array) -> jax.Array:
  return jnp.sum(jnp.sin(y))  # Every output moves the gradient differently.


def scales_as_one(grads: tuple[dict, jax.Array]) -> tuple[dict, jax.Array, jax.Array]:
  """(parameter gradients but the scales', input gradient, the scales' as one
  vector). Weighted by the scales, a channel's scale gradients sum to zero in
  train mode (the one BN ignores a common factor), so one of them can be a
  small difference of large sums: they are compared together, to the largest."""
  params, inputs = grads
  scales = jnp.concatenate([g for name, g in sorted(params.items()) if name.endswith('_scale')])
  return {k: g for k, g in params.items() if not k.endswith('_scale')}, inputs, scales


# The fast tier: each kind, each size, stride, grouping, the DBB both dense and
# depthwise (its two structures), RepVGG at stride 1 (its identity branch); the
# full tier: the rest of the product.
FAST_CASES = [('repvgg', 3, 1, 'dense')]
CASES = [
  *FAST_CASES,
  *(
    pytest.param(*case, marks=pytest.mark.full)
    for case in itertools.product(ONLINE, [3, 5], [1, 2], GROUPINGS)
    if case not in FAST_CASES
  ),
]


@pytest.mark.parametrize('kind,kernel_size,strides,grouping', CASES)
def test_online_block_is_its_branches_computed_one_by_one(kind, kernel_size, strides, grouping):
  """One conv of W = sum_b diag(s_b) K_b, then the BN, is the branches summed
  then the BN: in train mode (output, batch statistics, gradients of every
  parameter and of the input) and in eval mode, where it is also the conv
  that fusion makes of it. Even and odd sides (stride 2 drops the last row
  of one, not of the other)."""
  channels_in, features, groups = GROUPINGS[grouping]
  block = ONLINE[kind](features, kernel_size, strides=strides, feature_group_count=groups)
  inputs = [
    jax.random.normal(jax.random.key(7), (2, size, size + 3, channels_in)) for size in (10, 11)
  ]
  variables = random_online_variables(block, inputs[0])
  stats = variables['batch_stats']['bn']

  def online(params, x):
    y, updates = block.apply(
      {**variables, 'params': params}, x, train=True, mutable=['batch_stats']
    )
    return sin_loss(y), (y, updates['batch_stats']['bn'])

  def reference(params, x):
    z = branches_one_by_one(kind, params, x, kernel_size, strides, groups)
    y, new_stats = batch_norm_in_train_mode(z, params['bn'], stats)
    return sin_loss(y), (y, new_stats)

  def compare(x):
    train = [
      jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(variables['params'], x)
      for f in (online, reference)
    ]
    return train, eval_and_fused_outputs(block, variables, x)

  for train, (eval_output, fused_output) in jax.jit(lambda xs: [compare(x) for x in xs])(inputs):
    ((_, got), got_grads), ((_, want), want_grads) = train
    assert jax.tree.structure(got_grads) == jax.tree.structure(want_grads)
    for actual, expected in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      assert max_relative_error(actual, expected) <= BLOCK_RTOL
    for actual, expected in zip(
      jax.tree.leaves(scales_as_one(got_grads)), jax.tree.leaves(scales_as_one(want_grads))
    ):
      assert max_relative_error(actual, expected) <= TRAIN_GRADIENT_RTOL
    assert max_relative_error(fused_output, eval_output) <= BLOCK_RTOL


def test_online_blocks_keep_the_offline_names_and_start_as_the_offline_conv():
  """The branch convs keep their names and inits, each branch BN becomes
  `<branch>_scale` from the kind's BN scale init, and one BN `bn` follows:
  in eval mode the online block starts as the offline block's conv (the DBB's
  branches with two BNs are scaled once more by 1/sqrt(1 + eps) offline)."""
  x = jax.random.normal(jax.random.key(3), (2, 9, 9, 8))
  online_names = {
    'acnet': {'square', 'ver', 'hor', 'square_scale', 'ver_scale', 'hor_scale', 'bn'},
    'dbb': {
      'origin',
      '1x1',
      'avg_conv',
      '1x1_kxk_idconv1',
      '1x1_kxk_conv2',
      'origin_scale',
      '1x1_scale',
      'avg_scale',
      '1x1_kxk_scale',
      'bn',
    },
    'repvgg': {'dense', '1x1', 'dense_scale', '1x1_scale', 'identity_scale', 'bn'},
  }
  gamma_init = {'acnet': 1 / 3, 'dbb': 1.0, 'repvgg': 1.0}
  options = lambda kind: {'gamma_init': gamma_init[kind]} if kind == 'acnet' else {}
  blocks = {
    kind: [table[kind](8, 3, **options(kind)) for table in (ONLINE, OFFLINE)] for kind in ONLINE
  }
  # One program for all (eager or one jit each compiles slowly); one key: the same draws.
  inits = jax.jit(
    lambda key, x: {
      kind: [b.init(key, x, train=False) for b in pair] for kind, pair in blocks.items()
    }
  )(jax.random.key(0, impl='rbg'), x)
  outputs = jax.jit(
    lambda inits, x: {
      kind: [b.apply(v, x, train=False) for b, v in zip(blocks[kind], inits[kind])]
      for kind in blocks
    }
  )(inits, x)
  for kind, (online, offline) in inits.items():
    assert set(online['params']) == online_names[kind] and set(online['batch_stats']) == {'bn'}
    for name, value in online['params'].items():
      if name.endswith('_scale'):
        np.testing.assert_array_equal(value, np.full(8, gamma_init[kind], np.float32))
      elif name != 'bn':
        np.testing.assert_array_equal(value['kernel'], offline['params'][name]['kernel'])
    assert max_relative_error(*outputs[kind]) <= BLOCK_RTOL + BN_EPSILON / 2, kind
  depthwise = jax.eval_shape(
    lambda: OnlineDBB(8, 3, feature_group_count=8).init(jax.random.key(0), x, train=False)
  )['params']
  assert set(depthwise) == {
    'origin',
    '1x1_kxk_conv1',
    '1x1_kxk_conv2',
    'origin_scale',
    'avg_scale',
    '1x1_kxk_scale',
    'bn',
  }


@pytest.mark.parametrize(
  'options',
  [
    dict(kernel_size=3, strides=2, feature_group_count=2),
    dict(
      kernel_size=5, strides=1, feature_group_count=8, branches=('square', 'ver'), use_affine=False
    ),
  ],
)
def test_the_acb_without_branch_bns_computed_online_is_the_same_block(options):
  """ACB(branch_bn=False) sums three convs, then one BN; its online form is one
  conv of the summed kernels, then that BN: the same variables, and the same
  train-mode output, batch statistics and gradients (to rounding). The online
  ACB with branch BNs is that block with a learnable scale per branch: at
  scales 1 the same values and gradients, plus gradients for the scales, which
  move them away from it."""
  x = jax.random.normal(jax.random.key(5), (4, 11, 11, 8))
  ablation = [block(8, branch_bn=False, **options) for block in (ACB, OnlineACB)]
  scaled = OnlineACB(8, **options)
  *inits, scaled_init = jax.jit(
    lambda key, x: [b.init(key, x, train=False) for b in (*ablation, scaled)]
  )(jax.random.key(0, impl='rbg'), x)
  jax.tree.map(np.testing.assert_array_equal, *inits)
  variables = randomize_batch_norm(inits[0], 1)
  # Its scales are 1 (gamma_init); the rest as the ablation's.
  scaled_variables = {
    'batch_stats': variables['batch_stats'],
    'params': {
      **variables['params'],
      **{k: v for k, v in scaled_init['params'].items() if k.endswith('_scale')},
    },
  }

  def train_mode(block, variables, x):
    def loss(params, x):
      y, updates = block.apply(
        {**variables, 'params': params}, x, train=True, mutable=['batch_stats']
      )
      return sin_loss(y), (y, updates['batch_stats'])

    return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(variables['params'], x)

  runs = jax.jit(
    lambda v, scaled_v, x: [
      train_mode(block, v, x)
      for block, v in [(ablation[0], v), (ablation[1], v), (scaled, scaled_v)]
    ]
  )(variables, scaled_variables, x)
  (_, expected), expected_grads = runs[0]
  for block, ((_, actual), grads) in zip((ablation[1], scaled), runs[1:]):
    for got, want in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
      assert max_relative_error(got, want) <= BLOCK_RTOL
    params_grads, input_grads = grads
    shared = {k: g for k, g in params_grads.items() if not k.endswith('_scale')}
    for got, want in zip(jax.tree.leaves((shared, input_grads)), jax.tree.leaves(expected_grads)):
      assert max_relative_error(got, want) <= TRAIN_GRADIENT_RTOL
    scales = {k: g for k, g in params_grads.items() if k.endswith('_scale')}
    if options.get('use_affine', True) and block is scaled:
      assert set(scales) == {f'{b}_scale' for b in block.branches}
      kernel_grads = float(jnp.max(jnp.abs(params_grads['square']['kernel'])))
      assert all(float(jnp.max(jnp.abs(g))) > 1e-3 * kernel_grads for g in scales.values())
    else:  # No branch scales to learn: the ablation's variables, nothing more.
      assert not scales


def test_a_broken_online_block_is_refused_with_its_path():
  x = jnp.zeros((1, 6, 6, 8))
  variables = init_block(OnlineACB(8, 3), x)
  params = {k: v for k, v in variables['params'].items() if k != 'ver_scale'}
  with pytest.raises(FusionError, match="no scale at 'block/ver_scale'"):
    block_to_conv(params, variables['batch_stats'], 'block')
  params = {**variables['params'], 'hor_scale': jnp.ones(4)}
  with pytest.raises(FusionError, match=r"'block/hor_scale' has shape \(4,\) but its branch has 8"):
    block_to_conv(params, variables['batch_stats'], 'block')


@pytest.mark.parametrize(
  'block,channels',
  [
    (OnlineACB(8, 4), 8),
    (OnlineDBB(8, 4), 8),
    (OnlineRepVGG(8, 2), 8),
    (OnlineDBB(8, 3, feature_group_count=8), 4),
  ],
)
def test_online_blocks_refuse_what_they_cannot_build(block, channels):
  with pytest.raises(ValueError, match='odd kernel size|as many input as output'):
    jax.eval_shape(
      lambda: block.init(jax.random.key(0), jnp.zeros((1, 8, 8, channels)), train=False)
    )

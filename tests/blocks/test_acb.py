"""ACB: eval output equals its fused single conv at every stride, size and
grouping, with every option and either computation; train mode does not."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acnet_jax.blocks.acb import ACB
from acnet_jax.blocks.conv_bn import ConvBias, ConvBN
from acnet_jax.fusion import block_to_conv
from tests.support.numerics import (
  BLOCK_RTOL,
  eval_and_fused_outputs,
  fused_conv_output,
  init_block,
  max_relative_error,
  randomize_batch_norm,
)


def init_acb(acb: ACB, x: jax.Array, seed: int = 0) -> dict:
  return randomize_batch_norm(init_block(acb, x, seed), seed + 1)


CASES = list(itertools.product([3, 5], [1, 2], [16, 17], ['dense', 'depthwise']))


@pytest.mark.parametrize('kernel_size,strides,size,grouping', CASES)
def test_acb_equals_fused_conv_in_eval(kernel_size, strides, size, grouping):
  channels_in, channels_out = 8, (8 if grouping == 'depthwise' else 12)
  groups = channels_in if grouping == 'depthwise' else 1
  x = jax.random.normal(jax.random.key(7), (2, size, size + 2, channels_in))
  acb = ACB(channels_out, kernel_size, strides=strides, feature_group_count=groups)
  expected, actual = eval_and_fused_outputs(acb, init_acb(acb, x), x)
  assert actual.shape == expected.shape
  assert max_relative_error(actual, expected) <= BLOCK_RTOL


@pytest.mark.parametrize(
  'options',
  [
    dict(feature_group_count=2),
    dict(gamma_init=1 / 3),
    dict(use_affine=False),
    dict(branches=('square', 'ver')),
    dict(branches=('square', 'hor')),
    dict(branch_bn=False),
    dict(branch_bn=False, branches=('square', 'ver'), use_affine=False),
  ],
)
def test_acb_options_fuse_exactly(options):
  x = jax.random.normal(jax.random.key(3), (2, 9, 9, 4))
  acb = ACB(6, 3, strides=2, **options)
  variables = init_block(acb, x)
  if options.get('gamma_init'):
    scales = [variables['params'][f'{b}_bn']['scale'] for b in acb.branches]
    np.testing.assert_allclose(np.stack(scales), 1 / 3)
  if options.get('use_affine') is False:
    assert set(variables['params']) == set(acb.branches)
  if options.get('branch_bn') is False:
    assert set(variables['batch_stats']) == {'bn'}
  variables = randomize_batch_norm(variables, 1)
  expected, actual = eval_and_fused_outputs(acb, variables, x)
  assert max_relative_error(actual, expected) <= BLOCK_RTOL
  assert set(variables['params']) >= set(acb.branches)
  assert not set(variables['params']) & ({'square', 'ver', 'hor'} - set(acb.branches))


# depthwise; grouped + strided, 5x5, one BN after the summed branches (full tier)
STACKED_CASES = [
  (3, 1, 8, True),
  *(
    pytest.param(*case, marks=pytest.mark.full)
    for case in [(3, 2, 2, True), (5, 1, 1, True), (3, 2, 1, False)]
  ),
]


@pytest.mark.parametrize('kernel_size,strides,groups,branch_bn', STACKED_CASES)
def test_stacked_acb_computes_the_same_block(kernel_size, strides, groups, branch_bn):
  """Same parameter tree and init; same train-mode output, batch statistics
  and gradients (to float rounding) as one conv per branch."""
  x = jax.random.normal(jax.random.key(5), (4, 11, 11, 8))
  blocks = {
    impl: ACB(
      8, kernel_size, strides=strides, feature_group_count=groups, impl=impl, branch_bn=branch_bn
    )
    for impl in ('branches', 'stacked')
  }
  inits = {impl: init_block(block, x) for impl, block in blocks.items()}
  assert jax.tree.structure(inits['branches']) == jax.tree.structure(inits['stacked'])
  jax.tree.map(np.testing.assert_array_equal, inits['branches'], inits['stacked'])

  variables = randomize_batch_norm(inits['branches'], 1)

  def train_mode(impl):
    def loss(params, x):
      y, updates = blocks[impl].apply(
        {**variables, 'params': params}, x, train=True, mutable=['batch_stats']
      )
      return jnp.sum(jnp.sin(y)), (y, updates['batch_stats'])

    (_, aux), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
      variables['params'], x
    )
    return aux, grads

  expected, actual = train_mode('branches'), train_mode('stacked')
  for want, got in zip(jax.tree.leaves(expected), jax.tree.leaves(actual)):
    assert max_relative_error(got, want) <= BLOCK_RTOL
  eval_out = {
    impl: jax.jit(lambda v, x: blocks[impl].apply(v, x, train=False))(variables, x)
    for impl in blocks
  }
  assert max_relative_error(eval_out['stacked'], eval_out['branches']) <= BLOCK_RTOL


def test_acb_rejects_an_even_kernel():
  with pytest.raises(ValueError, match='odd kernel size'):
    ACB(4, 4).init(jax.random.key(0), jnp.zeros((1, 8, 8, 2)), train=False)


def train_mode_comparison(seed: int = 0) -> dict[str, float]:
  """How far an ACB in train mode is from a single conv.

  Returns relative differences of outputs and of input gradients between the
  ACB in train mode (per-branch batch statistics) and
  - `deploy`: the fused conv (running statistics), as used at inference;
  - `summed_kernel`: one ConvBN in train mode whose kernel is the sum of the
    raw branch kernels (the ACB with one BN after the sum);
  - `batch_folded`: one conv with each branch folded with *this batch's*
    statistics, which equals the ACB's forward for this batch exactly, but has
    a different gradient because batch statistics depend on the input.
  """
  x = jax.random.normal(jax.random.key(seed), (16, 12, 12, 8))
  target = jax.random.normal(jax.random.key(seed + 1), (16, 12, 12, 8))
  acb = ACB(8, 3)
  variables = init_acb(acb, x, seed)
  params = variables['params']

  def loss(y):
    return jnp.mean((y - target) ** 2)

  def acb_train(x):
    y, _ = acb.apply(variables, x, train=True, mutable=['batch_stats'])
    return y

  def summed_kernel_conv_bn(x):
    k = sum(
      jnp.pad(params[b]['kernel'], pad)
      for b, pad in [
        ('square', ((0, 0),) * 4),
        ('ver', ((0, 0), (1, 1), (0, 0), (0, 0))),
        ('hor', ((1, 1), (0, 0), (0, 0), (0, 0))),
      ]
    )
    y, _ = ConvBN(8, 3).apply(
      {
        'params': {'conv': {'kernel': k}, 'bn': params['square_bn']},
        'batch_stats': {'bn': variables['batch_stats']['square_bn']},
      },
      x,
      train=True,
      mutable=['batch_stats'],
    )
    return y

  def batch_stats_of(x):
    stats = {}
    for b, shape in [('square', (3, 3)), ('ver', (3, 1)), ('hor', (1, 3))]:
      pad = tuple((k // 2, k // 2) for k in shape)
      y = jax.lax.conv_general_dilated(
        x, params[b]['kernel'], (1, 1), pad, dimension_numbers=('NHWC', 'HWIO', 'NHWC')
      )
      stats[f'{b}_bn'] = {'mean': y.mean(axis=(0, 1, 2)), 'var': y.var(axis=(0, 1, 2))}
    return stats

  frozen_stats = batch_stats_of(x)

  def batch_folded_conv(x):
    kernel, bias = block_to_conv(params, frozen_stats, 'acb')
    return ConvBias(8, 3).apply(
      {'params': {'conv': {'kernel': kernel, 'bias': bias}}}, x, train=False
    )

  def deploy_conv(x):
    return fused_conv_output(acb, variables, x)

  def output_and_grad(f):
    return jax.jit(lambda x: (f(x), jax.grad(lambda x: loss(f(x)))(x)))(x)

  reference, reference_grad = output_and_grad(acb_train)
  result = {}
  for name, f in [
    ('deploy', deploy_conv),
    ('summed_kernel', summed_kernel_conv_bn),
    ('batch_folded', batch_folded_conv),
  ]:
    output, grad = output_and_grad(f)
    result[f'{name}_output'] = max_relative_error(output, reference)
    result[f'{name}_grad'] = max_relative_error(grad, reference_grad)
  return result


@pytest.mark.full  # The fast tier checks the ACB's train mode against its branches.
def test_acb_in_train_mode_is_not_one_conv():
  diffs = train_mode_comparison()
  print(diffs)
  # For one batch, the forward pass is one conv (batch statistics are numbers)...
  assert diffs['batch_folded_output'] <= BLOCK_RTOL
  # ...but its gradient is not that conv's: the statistics depend on the input.
  assert diffs['batch_folded_grad'] > 0.05
  # Neither the deploy conv nor one BN after summed kernels trains like an ACB.
  for name in ['deploy_output', 'deploy_grad', 'summed_kernel_output', 'summed_kernel_grad']:
    assert diffs[name] > 0.05, name

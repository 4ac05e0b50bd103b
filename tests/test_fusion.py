"""Whole-model fusion: acnet, dbb, repvgg, offline and online, == deploy ==
mapped normal, and clear errors.

The fast tier fuses small members of every family (every kind of conv site:
plain, residual with projections, pre-activation, 5x5, depthwise); the full
tier every model of the zoo."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from acnet_jax import ACBOptions, ConvSwitch, FusionError, fuse_params, models, to_normal
from acnet_jax.blocks.primitives import bn_relu
from acnet_jax.blocks.repvgg import RepVGGOptions
from acnet_jax.models.common import pooled_logits
from acnet_jax.models.wrn_cifar import WideResNetCifar
from tests.support.numerics import MODEL_RTOL, max_relative_error, randomize_batch_norm

BATCH = 4


class AllSites(nn.Module):
  """One conv site of every sort the zoo has, in a row: 3x3 conv-BN, 5x5, 3x3
  at stride 2, depthwise 3x3, a BN-ReLU-conv pre-activation site, a 1x1; then
  the classifier head. The fast tier fuses it in every kind."""

  num_classes: int
  conv: ConvSwitch

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = nn.relu(self.conv(8, 3, name='plain')(x, train))
    x = nn.relu(self.conv(8, 5, name='wide')(x, train))
    x = nn.relu(self.conv(8, 3, strides=2, name='strided')(x, train))
    x = nn.relu(self.conv(8, 3, feature_group_count=8, name='depthwise')(x, train))
    x = self.conv(16, 3, with_bn=False, name='pre_activation')(
      bn_relu(x, train, 'pre_activation_bn', self.conv.dtype), train
    )
    x = nn.relu(self.conv(16, 1, name='pointwise')(x, train))
    return pooled_logits(x, self.num_classes, self.conv.dtype)


# Small models for the fast tier: every sort of site, and WRN-10-2 (pre-activation
# blocks, BNs outside blocks).
SMALL_MODELS = {
  'all_sites': AllSites,
  'wrn10_2': functools.partial(WideResNetCifar, blocks_per_stage=1, widen=2),
}


def create_model(name: str, conv: str, **switch_options):
  """`switch_options`: the ConvSwitch's (acb, online)."""
  if name in SMALL_MODELS:
    return SMALL_MODELS[name](num_classes=10, conv=ConvSwitch(conv, **switch_options))
  return models.create_model(name, conv, **switch_options)


def images(seed: int, n: int = BATCH) -> jax.Array:
  return jax.random.normal(jax.random.key(seed), (n, 32, 32, 3))


def trained_variables(name: str, conv: str, steps: int = 3, **switch_options) -> dict:
  """Train-mode passes update the running statistics from real activations;
  then every BN scale, bias and statistic is moved at random, as training
  would, so that no term of the fusion can hide."""
  model = create_model(name, conv, **switch_options)
  variables = jax.jit(lambda key: model.init(key, images(0), train=False))(
    jax.random.key(0, impl='rbg')
  )
  update_stats = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats'])[1])
  for i in range(steps):
    variables = {**variables, **update_stats(variables, images(i + 1))}
  return randomize_batch_norm(variables, 5, spread=0.3)


@functools.lru_cache(maxsize=None)
def cached_variables(name: str, conv: str, branch_bn: bool = True, online: bool = False) -> dict:
  return trained_variables(name, conv, acb=ACBOptions(branch_bn=branch_bn), online=online)


def normal_template(name: str) -> dict:
  model = create_model(name, 'normal')
  return jax.eval_shape(lambda: model.init(jax.random.key(0), images(0), train=False))['params']


def logits(name: str, conv: str, variables: dict, x: jax.Array, **switch_options) -> jax.Array:
  model = create_model(name, conv, **switch_options)
  return jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)


def shapes(tree: dict) -> dict:
  return jax.tree.map(jnp.shape, tree)


# (model, kind, ACB with branch BNs, online): the paper's ACB, and its
# ablation with one BN after the summed branches (WRN has both kinds of conv
# site); DBB and RepVGG on dense and pre-activation sites, 5x5 convs (cfqkbnc)
# and depthwise convs (MobileNet); each kind online (the fast tier: the ACB;
# `tests/blocks/test_online.py` fuses each kind's block).
SMALL = [('all_sites', 'acnet', True, False)]
ZOO = [
  ('all_sites', 'acnet', False, False),
  ('all_sites', 'dbb', True, False),
  ('all_sites', 'repvgg', True, False),
  ('all_sites', 'acnet', True, True),
  ('rc8', 'acnet', True, False),
  ('cfqkbnc', 'acnet', True, False),
  ('rc56', 'acnet', True, False),
  ('wrnc16', 'acnet', True, False),
  ('vc', 'acnet', True, False),
  ('densenet40', 'acnet', True, False),
  ('wrnc16', 'acnet', False, False),
  ('cfqkbnc', 'acnet', False, False),
  *(
    (name, conv, True, False)
    for conv in ('dbb', 'repvgg')
    for name in ('rc20', 'wrnc16', 'cfqkbnc', 'mobilenet_v1')
  ),
  ('all_sites', 'dbb', True, True),
  ('all_sites', 'repvgg', True, True),
  *(
    (name, conv, True, True)
    for conv in ('acnet', 'dbb', 'repvgg')
    for name in ('cfqkbnc', 'mobilenet_v1')
  ),
  ('rc20', 'acnet', True, True),
  ('wrnc16', 'repvgg', True, True),
]


@pytest.mark.parametrize(
  'name,conv,branch_bn,online',
  [*SMALL, *(pytest.param(*case, marks=pytest.mark.full) for case in ZOO)],
)
def test_trained_deploy_and_mapped_normal_logits_agree(name, conv, branch_bn, online):
  variables = cached_variables(name, conv, branch_bn, online)
  x = images(100)
  reference = logits(name, conv, variables, x, acb=ACBOptions(branch_bn=branch_bn), online=online)

  # Both transforms are pure functions of the trees, so they jit.
  deploy_params, deploy_stats = jax.jit(fuse_params)(variables['params'], variables['batch_stats'])
  deploy = logits(name, 'deploy', {'params': deploy_params, 'batch_stats': deploy_stats}, x)
  template = normal_template(name)
  normal_params, normal_stats = jax.jit(lambda p, s: to_normal(p, s, template))(
    variables['params'], variables['batch_stats']
  )
  normal = logits(name, 'normal', {'params': normal_params, 'batch_stats': normal_stats}, x)

  assert max_relative_error(deploy, reference) <= MODEL_RTOL
  assert max_relative_error(normal, reference) <= MODEL_RTOL
  # The map is not vacuous: the logits differ from class to class.
  assert float(jnp.std(reference)) > 1e-2
  # Every block fused: the variables are the deploy model's, as a fused
  # normal model's are (test_fused_acnet_and_fused_normal_are_the_deploy_model).
  deploy_init = jax.eval_shape(
    lambda: create_model(name, 'deploy').init(jax.random.key(0), images(0), train=False)
  )
  assert (shapes(deploy_params), shapes(deploy_stats)) == (
    shapes(deploy_init['params']),
    shapes(deploy_init.get('batch_stats', {})),
  )


@pytest.mark.parametrize(
  'name',
  ['all_sites', *(pytest.param(n, marks=pytest.mark.full) for n in ('rc20', 'mobilenet_v1'))],
)
def test_quantization_friendly_repvgg_fuses_to_the_deploy_model(name):
  """Chu et al.'s block: the sum's BN folds over the dense branch's bias too."""
  options = RepVGGOptions(quantization_friendly=True)
  variables = trained_variables(name, 'repvgg', repvgg=options)
  assert 'identity_sum_bn' in str(jax.tree.structure(variables['batch_stats']))
  x = images(100)
  reference = logits(name, 'repvgg', variables, x, repvgg=options)
  deploy_params, deploy_stats = jax.jit(fuse_params)(variables['params'], variables['batch_stats'])
  deploy = logits(name, 'deploy', {'params': deploy_params, 'batch_stats': deploy_stats}, x)
  assert max_relative_error(deploy, reference) <= MODEL_RTOL
  assert float(jnp.std(reference)) > 1e-2


@pytest.mark.parametrize(
  'name',
  [
    # Full: tests/models/test_imagenet.py checks ResNet-18 in the fast tier.
    pytest.param('rc8', marks=pytest.mark.full),
    pytest.param('wrn10_2', marks=pytest.mark.full),
    pytest.param('rc56', marks=pytest.mark.full),
    pytest.param('wrnc16', marks=pytest.mark.full),
  ],
)
def test_fused_acnet_and_fused_normal_are_the_deploy_model(name):
  acnet = cached_variables(name, 'acnet')
  normal = cached_variables(name, 'normal')
  deploy_init = jax.eval_shape(
    lambda: create_model(name, 'deploy').init(jax.random.key(0), images(0), train=False)
  )

  from_acnet = jax.jit(fuse_params)(acnet['params'], acnet['batch_stats'])
  from_normal = jax.jit(fuse_params)(normal['params'], normal['batch_stats'])
  expected = (shapes(deploy_init['params']), shapes(deploy_init.get('batch_stats', {})))
  assert (shapes(from_acnet[0]), shapes(from_acnet[1])) == expected
  assert (shapes(from_normal[0]), shapes(from_normal[1])) == expected

  # Same inference cost: the deploy forward pass of either has the FLOPs of the
  # other (XLA's count of the lowered program), and fewer than the normal
  # model's in eval mode, which computes its BNs.
  def flops(conv, variables):
    model = create_model(name, conv)
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
    return apply.lower(variables, images(0)).cost_analysis()['flops']

  deploy_flops = flops('deploy', {'params': from_acnet[0], 'batch_stats': from_acnet[1]})
  assert deploy_flops == flops('deploy', {'params': from_normal[0], 'batch_stats': from_normal[1]})
  # Fewer where BNs follow convs; as many where every conv is pre-activation (WRN).
  assert (
    deploy_flops < flops('normal', normal)
    if name in ('rc8', 'rc56')
    else deploy_flops == flops('normal', normal)
  )


def test_normal_model_fuses_exactly_too():
  variables = cached_variables('rc8', 'normal')
  x = images(101)
  params, stats = jax.jit(fuse_params)(variables['params'], variables['batch_stats'])
  deploy = logits('rc8', 'deploy', {'params': params, 'batch_stats': stats}, x)
  assert max_relative_error(deploy, logits('rc8', 'normal', variables, x)) <= MODEL_RTOL


@pytest.mark.full  # 16 s: the fast tier stays under 5 min.
def test_pre_activation_bns_stay_in_batch_stats():
  variables = cached_variables('wrn10_2', 'acnet')
  _, stats = fuse_params(variables['params'], variables['batch_stats'])
  block = stats['stage1_block1']
  assert set(block) == {'bn1', 'bn2', 'proj_bn'}
  assert 'final_bn' in stats


def test_missing_batch_stats_names_the_path():
  variables = cached_variables('rc8', 'acnet')
  with pytest.raises(FusionError, match="BN at 'stage1_block1/conv1/square_bn'"):
    fuse_params(variables['params'], None)


@pytest.mark.full  # Two models' variables; a missing BN's path is checked in the fast tier.
def test_statistics_of_another_model_name_the_path():
  params = cached_variables('rc8', 'acnet')['params']
  stats = dict(cached_variables('rc8', 'acnet')['batch_stats'])
  stats['stem'] = cached_variables('wrn10_2', 'acnet')['batch_stats']['stage3_block1']['conv2']
  with pytest.raises(FusionError, match="'stem/square_bn/mean' has shape"):
    fuse_params(params, stats)


def test_deploy_variables_come_back_unchanged():
  variables = cached_variables('rc8', 'acnet')
  deploy = fuse_params(variables['params'], variables['batch_stats'])
  again = fuse_params(*deploy)
  assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), again, deploy))


def test_to_normal_refuses_a_normal_model():
  variables = cached_variables('rc8', 'normal')
  with pytest.raises(
    FusionError, match="not the variables of a model of conv kind 'acnet' or 'dbb' or 'repvgg'"
  ):
    to_normal(variables['params'], variables['batch_stats'], normal_template('rc8'))


def test_to_normal_refuses_another_architecture():
  variables = cached_variables('rc8', 'acnet')
  with pytest.raises(
    FusionError,
    match="'final_bn/bias' would have shape None but the normal "
    r'model has \(128,\): not the same architecture',
  ):
    to_normal(variables['params'], variables['batch_stats'], normal_template('wrn10_2'))


def test_acb_without_square_kernel_is_refused():
  variables = cached_variables('rc8', 'acnet')
  params = jax.tree.map(lambda x: x, variables['params'])
  del params['stem']['square']
  with pytest.raises(FusionError, match="ACB at 'stem' has no 'square' kernel"):
    fuse_params(params, variables['batch_stats'])

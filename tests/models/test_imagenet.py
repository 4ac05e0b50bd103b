"""ImageNet models: published parameter counts, exact fusion, and bfloat16 computation."""

from __future__ import annotations

import functools
import math

import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from acnet_jax import ACBOptions, ConvSwitch, create_model, fuse_params, to_normal
from acnet_jax.blocks.primitives import BN_MOMENTUM
from acnet_jax.errors import InputError
from tests.support.numerics import MODEL_RTOL, max_relative_error, randomize_batch_norm

CLASSES = 1000
# bfloat16 keeps 8 significant bits: each rounding is off by at most u = 2^-9.
BF16_ROUNDING = 2.0**-9
# The bfloat16 tests' models and the conv layers on their longest path: the
# stem and two per residual block.
BF16_CASES = [
  pytest.param('rc8', 32, 1 + 3 * 2, marks=pytest.mark.full),
  pytest.param('resnet18', 64, 1 + 8 * 2, marks=pytest.mark.full),
]


def bf16_roundings(conv_layers: int) -> int:
  """Roundings to bfloat16 on the longest path: conv output, BN output and
  branch or residual sum per layer; the pool and the dense layer."""
  return 3 * conv_layers + 2


def images(seed: int, n: int, size: int) -> jax.Array:
  return jax.random.normal(jax.random.key(seed), (n, size, size, 3))


def variable_shapes(name: str, conv: str, size: int = 224, num_classes: int = CLASSES) -> dict:
  model = create_model(name, conv, num_classes)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), images(0, 1, size), train=False))


def count_params(name: str) -> int:
  return sum(x.size for x in jax.tree.leaves(variable_shapes(name, 'normal')['params']))


@pytest.mark.parametrize(
  'name,torchvision', [('resnet18', 11_689_512), ('resnet34', 21_797_672), ('resnet50', 25_557_032)]
)
def test_resnet_parameter_counts_are_torchvision_s(name, torchvision):
  assert count_params(name) == torchvision


def mobilenet_v1_count(classes: int = CLASSES) -> int:
  """By hand: stem conv+BN; per block a depthwise 3x3 (9 weights per channel)
  and a pointwise 1x1, each with 2 BN params per channel; dense."""
  widths = [32, 64, 128, 128, 256, 256, *[512] * 6, 1024, 1024]
  total = 3 * 3 * 3 * 32 + 2 * 32
  for cin, cout in zip(widths, widths[1:]):
    total += 9 * cin + 2 * cin + cin * cout + 2 * cout
  return total + 1024 * classes + classes


def test_mobilenet_v1_parameter_count():
  assert count_params('mobilenet_v1') == mobilenet_v1_count() == 4_231_976


def test_alexnet_parameter_count():
  """The authors' widths (64, 192, 384, 384, 256) with BN and no conv bias, and
  a 256 x 6 x 6 input to the first dense layer: 61,839,528 (torchvision's
  AlexNet, with conv biases and conv4 256 wide, has 61,100,840)."""
  convs = [(3, 64, 11), (64, 192, 5), (192, 384, 3), (384, 384, 3), (384, 256, 3)]
  total = sum(k * k * cin * cout + 2 * cout for cin, cout, k in convs)
  total += 256 * 6 * 6 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * CLASSES + CLASSES
  assert count_params('alexnet') == total == 61_839_528


def test_only_3x3_and_5x5_convs_become_acbs():
  """The ConvSwitch keeps 1x1 convs and the 7x7 and 11x11 stems normal; a
  depthwise ACB keeps one input channel per filter."""
  resnet = variable_shapes('resnet50', 'acnet', 64)['params']
  assert set(resnet['stem']) == {'conv', 'bn'}
  assert set(resnet['stage1_block1']['conv1']) == {'conv', 'bn'}
  assert set(resnet['stage1_block1']['conv2']) == {
    'square',
    'square_bn',
    'ver',
    'ver_bn',
    'hor',
    'hor_bn',
  }
  alexnet = variable_shapes('alexnet', 'acnet')['params']
  assert set(alexnet['conv1']) == {'conv', 'bn'}
  assert alexnet['conv2']['ver']['kernel'].shape == (5, 1, 64, 192)
  mobilenet = variable_shapes('mobilenet_v1', 'acnet', 64)['params']
  assert mobilenet['block2']['depthwise']['hor']['kernel'].shape == (1, 3, 1, 64)
  assert set(mobilenet['block2']['pointwise']) == {'conv', 'bn'}


@pytest.mark.parametrize('name', ['resnet18', 'resnet34', 'resnet50', 'mobilenet_v1', 'alexnet'])
def test_fused_acnet_and_fused_normal_are_the_deploy_model(name):
  """Same trees and shapes (fusion is pure jnp, so eval_shape runs it on shapes)."""
  structure = lambda tree: jax.tree.map(lambda x: x.shape, tree)
  deploy = variable_shapes(name, 'deploy')
  expected = (structure(deploy['params']), structure(deploy.get('batch_stats', {})))
  for conv in ('acnet', 'normal'):
    variables = variable_shapes(name, conv)
    fused = jax.eval_shape(fuse_params, variables['params'], variables['batch_stats'])
    assert structure(fused) == expected, conv


def calibrated_variables(model, x: jax.Array, seed: int) -> dict:
  """Variables whose BNs see realistic activations: kernels drawn with numpy
  (a jitted init compiles for seconds per model), batch statistics those of
  `x` in train mode, then every BN variable moved at random as training would,
  so that no term of the fusion can hide."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      fan_in = math.prod(leaf.shape[:-1])
      return jnp.asarray(rng.normal(size=leaf.shape) / math.sqrt(fan_in), jnp.float32)
    # With running statistics at zero, one train-mode pass leaves (1 - momentum) x the batch's.
    return jnp.full(leaf.shape, 1.0 if name == 'scale' else 0.0, jnp.float32)

  variables = jax.tree_util.tree_map_with_path(draw, shapes)
  _, updates = jax.jit(
    lambda v, x: model.apply(
      v, x, train=True, mutable=['batch_stats'], rngs={'dropout': jax.random.key(0)}
    )
  )(variables, x)
  stats = jax.tree.map(lambda s: s / (1 - BN_MOMENTUM), updates['batch_stats'])
  return randomize_batch_norm({**variables, 'batch_stats': stats}, seed, spread=0.3)


def logits(model, variables: dict, x: jax.Array) -> jax.Array:
  return jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)


@pytest.mark.full
@pytest.mark.parametrize('name', ['resnet18', 'resnet50', 'mobilenet_v1', 'alexnet'])
def test_acnet_deploy_and_mapped_normal_logits_agree(name):
  """At 224 pixels and at the odd 225, where stride-2 convs see odd inputs."""
  acnet, deploy, normal = (
    create_model(name, conv, CLASSES) for conv in ('acnet', 'deploy', 'normal')
  )
  variables = calibrated_variables(acnet, images(0, 2, 224), seed=1)
  deploy_params, deploy_stats = jax.jit(fuse_params)(variables['params'], variables['batch_stats'])
  template = variable_shapes(name, 'normal')['params']
  normal_params, normal_stats = jax.jit(lambda p, s: to_normal(p, s, template))(
    variables['params'], variables['batch_stats']
  )
  for size in (224, 225):
    x = images(size, 2, size)
    reference = logits(acnet, variables, x)
    fused = logits(deploy, {'params': deploy_params, 'batch_stats': deploy_stats}, x)
    mapped = logits(normal, {'params': normal_params, 'batch_stats': normal_stats}, x)
    assert max_relative_error(fused, reference) <= MODEL_RTOL, size
    assert max_relative_error(mapped, reference) <= MODEL_RTOL, size
    # The map is not vacuous: the logits differ from class to class.
    assert float(jnp.std(reference)) > 1e-2, size


def test_dtype_is_validated_and_canonical():
  with pytest.raises(InputError, match='valid: float32, bfloat16'):
    ConvSwitch(dtype='float16')
  with pytest.raises(InputError, match='valid: float32, bfloat16'):
    ConvSwitch(dtype='bf16')
  assert ConvSwitch(dtype='bfloat16').dtype == ConvSwitch(dtype=jnp.bfloat16).dtype == jnp.bfloat16
  assert ConvSwitch().dtype == jnp.float32
  with pytest.raises(InputError, match='not both'):
    create_model('rc8', ConvSwitch('acnet'), dtype='bfloat16')


def matmul_operand_dtypes(jaxpr: jex.Jaxpr) -> list[jnp.dtype]:
  """The operand dtypes of every conv and dense matmul, nested jaxprs included."""
  dtypes = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name in ('conv_general_dilated', 'dot_general'):
      dtypes += [v.aval.dtype for v in eqn.invars]
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else [param]:
        if isinstance(sub, jex.ClosedJaxpr):
          dtypes += matmul_operand_dtypes(sub.jaxpr)
        elif isinstance(sub, jex.Jaxpr):
          dtypes += matmul_operand_dtypes(sub)
  return dtypes


@pytest.mark.parametrize(
  'name,conv,options',
  [
    ('mobilenet_v1', 'acnet', {}),
    ('resnet50', 'acnet', {'acb': ACBOptions(impl='stacked')}),
    ('alexnet', 'deploy', {}),
    ('wrnc16', 'normal', {}),
    pytest.param('densenet40', 'acnet', {}, marks=pytest.mark.full),
  ],
)
def test_bfloat16_runs_every_conv_and_dense_in_bfloat16(name, conv, options):
  model = create_model(name, conv, dtype='bfloat16', **options)
  variables = variable_shapes(name, conv, 64, num_classes=10)
  x = images(0, 2, 64)
  apply = lambda v, x: model.apply(
    v, x, train=True, mutable=['batch_stats'], rngs={'dropout': jax.random.key(0)}
  )
  jaxpr = jax.make_jaxpr(apply)(variables, x)
  dtypes = matmul_operand_dtypes(jaxpr.jaxpr)
  assert dtypes and set(dtypes) == {jnp.dtype(jnp.bfloat16)}
  out, updates = jax.eval_shape(apply, variables, x)
  assert out.dtype == jnp.float32
  assert {s.dtype for s in jax.tree.leaves(updates)} <= {jnp.dtype(jnp.float32)}


@functools.lru_cache(maxsize=None)
def calibrated_acnet(name: str, size: int) -> dict:
  return calibrated_variables(create_model(name, 'acnet'), images(0, 8, size), seed=2)


@pytest.mark.full
@pytest.mark.parametrize('name,size,conv_layers', BF16_CASES)
def test_bfloat16_train_mode_loss_is_close_to_float32(name, size, conv_layers):
  """Same params and batch: the loss in bfloat16 is close to float32's, and
  gradients and batch statistics stay float32.

  Bound: independent roundings add up like a random walk, to sqrt(n) u on
  the logits; train-mode BN renormalizes every layer, so they do not
  compound, and the loss, an average over the batch, moves less than its
  logits. Three times that: 2.8e-2 for rc8, 4.3e-2 for resnet18 (measured:
  1e-3 and 4e-4)."""
  tolerance = 3 * math.sqrt(bf16_roundings(conv_layers)) * BF16_ROUNDING
  variables = calibrated_acnet(name, size)
  x = images(3, 8, size)
  labels = jax.random.randint(jax.random.key(4), (8,), 0, 10)

  def train_loss(dtype):
    model = create_model(name, 'acnet', dtype=dtype)

    def loss(params):
      y, updates = model.apply(
        {**variables, 'params': params}, x, train=True, mutable=['batch_stats']
      )
      return optax.softmax_cross_entropy_with_integer_labels(y, labels).mean(), updates

    return loss

  loss32, _ = jax.jit(train_loss('float32'))(variables['params'])
  loss16, updates = jax.jit(train_loss('bfloat16'))(variables['params'])
  assert abs(float(loss16) - float(loss32)) <= tolerance * abs(float(loss32))
  # The optimizer sees float32: gradients have the params' dtype (shapes only, no compile).
  grads, _ = jax.eval_shape(jax.grad(train_loss('bfloat16'), has_aux=True), variables['params'])
  float32 = {jnp.dtype(jnp.float32)}
  assert {leaf.dtype for leaf in jax.tree.leaves((grads, updates))} == float32


@pytest.mark.parametrize('name,size,conv_layers', BF16_CASES)
def test_fused_deploy_in_bfloat16_predicts_like_acnet_in_bfloat16(name, size, conv_layers):
  """Fusion runs on the float32 variables; only the computation is bfloat16.

  Near-ties between two classes can flip under rounding, so top-1 agreement
  is asked on 95% of the batch. Logits: if all n roundings of each of the two
  computations added up (the worst case), they would differ by 2 n u: 9.0e-2
  for rc8, 0.21 for resnet18 (measured: 7e-3 and 4.6e-2; the random walk's
  sqrt(2 n) u is 1.9e-2 for resnet18, and eval-mode BN with moved statistics
  amplifies some roundings). The fusion itself is exact to 1e-4 in float32
  (`test_acnet_deploy_and_mapped_normal_logits_agree`)."""
  variables = calibrated_acnet(name, size)
  x = images(5, 64, size)
  deploy_params, deploy_stats = jax.jit(fuse_params)(variables['params'], variables['batch_stats'])
  reference = logits(create_model(name, 'acnet', dtype='bfloat16'), variables, x)
  fused = logits(
    create_model(name, 'deploy', dtype='bfloat16'),
    {'params': deploy_params, 'batch_stats': deploy_stats},
    x,
  )
  assert reference.dtype == fused.dtype == jnp.float32
  agreement = jnp.mean(jnp.argmax(reference, -1) == jnp.argmax(fused, -1))
  assert float(agreement) >= 0.95
  assert max_relative_error(fused, reference) <= 2 * bf16_roundings(conv_layers) * BF16_ROUNDING

"""Model registry and parameter counts against the published architectures."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from acnet_jax import create_model


def count_params(name: str, conv: str, num_classes: int = 10) -> int:
  model = create_model(name, conv, num_classes)
  shapes = jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  )
  return sum(x.size for x in jax.tree.leaves(shapes['params']))


def resnet_cifar_count(blocks: int, classes: int = 10) -> int:
  """By hand: conv kernels + 2 BN params per channel + projections + dense."""
  conv_bn = lambda cin, cout, k: k * k * cin * cout + 2 * cout
  total = conv_bn(3, 16, 3)
  cin = 16
  for width in (16, 32, 64):
    for _ in range(blocks):
      total += conv_bn(cin, width, 3) + conv_bn(width, width, 3)
      if cin != width:
        total += conv_bn(cin, width, 1)
      cin = width
  return total + 64 * classes + classes


def wrn_cifar_count(blocks: int, widen: int, classes: int = 10) -> int:
  """By hand: pre-activation BNs + convs with bias + final BN + dense."""
  conv = lambda cin, cout, k: k * k * cin * cout + cout
  total = conv(3, 16, 3)
  cin = 16
  for width in (16 * widen, 32 * widen, 64 * widen):
    for block in range(blocks):
      total += 2 * cin + conv(cin, width, 3) + 2 * width + conv(width, width, 3)
      if block == 0:
        total += 2 * cin + conv(cin, width, 1)
      cin = width
  return total + 2 * cin + cin * classes + classes


@pytest.mark.parametrize(
  'name,blocks,published', [('rc20', 3, 0.27e6), ('rc56', 9, 0.85e6), ('rc110', 18, 1.7e6)]
)
def test_resnet_cifar_parameter_counts(name, blocks, published):
  count = count_params(name, 'normal')
  assert count == resnet_cifar_count(blocks)
  # He et al. (2016), Table 6; our 1x1 projection shortcuts add < 1%.
  assert abs(count - published) / published < 0.02


def test_resnet8_is_the_same_family_with_one_block_per_stage():
  assert count_params('rc8', 'normal') == resnet_cifar_count(1)


def test_wrn_16_8_parameter_count():
  count = count_params('wrnc16', 'normal')
  assert count == wrn_cifar_count(2, 8)
  # Zagoruyko & Komodakis (2016), Table 1: WRN-16-8 has 11.0M parameters.
  assert abs(count - 11.0e6) / 11.0e6 < 0.005


def test_cifar_quick_parameter_count():
  assert count_params('cfqkbnc', 'normal') == 117_034  # The and the paper's figure.


def test_vgg16_parameter_count():
  widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
  convs = sum(9 * cin * cout + 2 * cout for cin, cout in zip([3] + widths, widths))
  assert count_params('vc', 'normal') == convs + 512 * 512 + 512 + 512 * 10 + 10
  # 15.0M, the usual figure for VGG-16 (BN) on CIFAR with a 512-wide dense layer.
  assert abs(count_params('vc', 'normal') - 15.0e6) / 15.0e6 < 0.01


def test_densenet40_parameter_count():
  total, channels = 16 * 27 + 16, 16  # Stem conv with bias.
  for block in range(3):
    for _ in range(12):
      total += 2 * channels + 9 * channels * 12 + 12
      channels += 12
    if block < 2:
      total += 2 * channels + channels * channels + channels
  total += 2 * channels + channels * 10 + 10
  assert count_params('densenet40', 'normal') == total
  # Huang et al. (2017), Table 2: DenseNet (L=40, k=12) has 1.0M parameters.
  assert abs(total - 1.0e6) / 1.0e6 < 0.03


def test_acnet_adds_the_1d_branches_only_at_training_time():
  # Each 3x3 conv+BN gains a 3x1 and a 1x3 conv with their BNs: 2/3 more kernel.
  normal, acnet, deploy = (count_params('rc56', c) for c in ('normal', 'acnet', 'deploy'))
  assert 1.6 < acnet / normal < 1.7
  assert deploy < normal


def test_cifar100_head():
  assert count_params('rc56', 'normal', 100) - count_params('rc56', 'normal', 10) == 90 * 65


def test_unknown_model_lists_the_valid_ones():
  with pytest.raises(
    ValueError,
    match='valid models: alexnet, cfqkbnc, densenet40, mobilenet_v1, '
    'rc110, rc20, rc56, rc8, resnet18, resnet34, resnet50, vc, '
    'wrnc16',
  ):
    create_model('resnet56', 'normal')

"""DingXiaoH/DiverseBranchBlock's builder (convnet_utils.py, its globals
CONV_BN_IMPL and DEPLOY_FLAG as a `Builder`) and its models (resnet.py:
ResNet-18, ResNet-50; mobilenet.py: MobileNet), and convert.py's deploy switch."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

# resnet.py's BasicBlock and mobilenet.py's block are ACNet's, with the builder's
# conv_bn and conv_bn_relu under the names ACNet's builder gives them.
from authors_torch.acnet_models import BasicBlock, MobileV1Block
from authors_torch.blocks import ACBlock, ConvBN, DiverseBranchBlock

# Our conv kinds -> convnet_utils' CONV_BN_IMPL.
IMPLS = {'normal': 'base', 'acnet': 'ACB', 'dbb': 'DBB'}


class Builder:
  """conv_bn and conv_bn_relu: 1x1 convs and 7x7+ stems stay ConvBN."""

  def __init__(self, impl: str, deploy: bool = False):
    self.impl = impl
    self.deploy = deploy

  def block_type(self, kernel_size):
    if self.impl == 'base' or kernel_size == 1 or kernel_size >= 7:
      return ConvBN
    return ACBlock if self.impl == 'ACB' else DiverseBranchBlock

  def conv_bn(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1):
    return self.block_type(kernel_size)(
      in_channels=in_channels,
      out_channels=out_channels,
      kernel_size=kernel_size,
      stride=stride,
      padding=padding,
      dilation=1,
      groups=groups,
      deploy=self.deploy,
    )

  def conv_bn_relu(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1):
    return self.block_type(kernel_size)(
      in_channels=in_channels,
      out_channels=out_channels,
      kernel_size=kernel_size,
      stride=stride,
      padding=padding,
      dilation=1,
      groups=groups,
      deploy=self.deploy,
      nonlinear=nn.ReLU(),
    )

  Conv2dBN, Conv2dBNReLU = conv_bn, conv_bn_relu  # The names ACNet's blocks call.


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, builder, in_planes, planes, stride=1):
    super().__init__()
    if stride != 1 or in_planes != self.expansion * planes:
      self.shortcut = builder.conv_bn(
        in_planes, self.expansion * planes, kernel_size=1, stride=stride
      )
    else:
      self.shortcut = nn.Identity()
    self.conv1 = builder.conv_bn_relu(in_planes, planes, kernel_size=1)
    self.conv2 = builder.conv_bn_relu(planes, planes, kernel_size=3, stride=stride, padding=1)
    self.conv3 = builder.conv_bn(planes, self.expansion * planes, kernel_size=1)

  def forward(self, x):
    out = self.conv3(self.conv2(self.conv1(x)))
    out += self.shortcut(x)
    return F.relu(out)


class ResNet(nn.Module):
  def __init__(self, builder, block, num_blocks, num_classes=1000):
    super().__init__()
    self.in_planes = 64
    self.stage0 = nn.Sequential()
    self.stage0.add_module('conv1', builder.conv_bn_relu(3, 64, kernel_size=7, stride=2, padding=3))
    self.stage0.add_module('maxpool', nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    for stage, (count, planes) in enumerate(zip(num_blocks, (64, 128, 256, 512)), 1):
      blocks = []
      for stride in [1 if stage == 1 else 2] + [1] * (count - 1):
        blocks.append(block(builder, self.in_planes, planes, stride))
        self.in_planes = planes * block.expansion
      self.add_module(f'stage{stage}', nn.Sequential(*blocks))
    self.gap = nn.AdaptiveAvgPool2d(output_size=1)
    self.linear = nn.Linear(512 * block.expansion, num_classes)

  def forward(self, x):
    out = self.stage4(self.stage3(self.stage2(self.stage1(self.stage0(x)))))
    return self.linear(self.gap(out).view(x.size(0), -1))


MOBILE_CHANNELS = [
  32,
  32,
  64,
  64,
  128,
  128,
  128,
  128,
  256,
  256,
  256,
  256,
  512,
  512,
  512,
  512,
  512,
  512,
  512,
  512,
  512,
  512,
  512,
  512,
  1024,
  1024,
  1024,
]


class MobileV1(nn.Module):
  def __init__(self, builder, num_classes=1000):
    super().__init__()
    channels = MOBILE_CHANNELS
    self.conv1 = builder.conv_bn_relu(3, channels[0], kernel_size=3, stride=2, padding=1)
    self.stem = nn.Sequential(
      *[
        MobileV1Block(
          builder, channels[i * 2 + 1], channels[i * 2 + 2], 2 if i in (1, 3, 5, 11) else 1
        )
        for i in range(13)
      ]
    )
    self.gap = nn.AdaptiveAvgPool2d(output_size=1)
    self.linear = nn.Linear(channels[-1], num_classes)

  def forward(self, x):
    out = self.gap(self.stem(self.conv1(x)))
    return self.linear(out.view(out.size(0), -1))


MODELS = {
  'resnet18': lambda builder, classes: ResNet(builder, BasicBlock, (2, 2, 2, 2), classes),
  'resnet50': lambda builder, classes: ResNet(builder, Bottleneck, (3, 4, 6, 3), classes),
  'mobilenet_v1': lambda builder, classes: MobileV1(builder, classes),
}


def build(model: str, kind: str, num_classes: int) -> nn.Module:
  """`kind`: normal, acnet or dbb (the training form; `switch_to_deploy` makes
  the deploy one, as convert.py does)."""
  return MODELS[model](Builder(IMPLS[kind]), num_classes)


def switch_to_deploy(model: nn.Module) -> nn.Module:
  """convert.py: every module that has a deploy form takes it."""
  for module in list(model.modules()):
    if hasattr(module, 'switch_to_deploy'):
      module.switch_to_deploy()
  return model

"""DingXiaoH/ACNet's builders and models: builder.py (ConvBuilder),
acnet/acnet_builder.py (ACNetBuilder) and base_model/ (cfqk.py, vgg.py,
stagewise_resnet.py, wrn.py, resnet.py, mobilenetv1.py), as `model_map.py`
names them: cfqkbnc, vc, src56, wrnc16plain, sres18, sres34, sres50, smi1."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from authors_torch.blocks import ACBlock


class FlattenLayer(nn.Module):
  def forward(self, inputs):
    return inputs.view(inputs.size(0), -1)


class ConvBuilder:
  """builder.py, the parts these models use (BN eps 1e-5, momentum 0.1, affine)."""

  def Conv2d(
    self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1, bias=True
  ):
    return nn.Conv2d(
      in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias
    )

  def BatchNorm2d(self, num_features):
    return nn.BatchNorm2d(num_features, eps=1e-5, momentum=0.1)

  def Conv2dBN(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1):
    se = nn.Sequential()
    se.add_module(
      'conv',
      nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False),
    )
    se.add_module('bn', self.BatchNorm2d(out_channels))
    return se

  def Conv2dBNReLU(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1):
    se = ConvBuilder.Conv2dBN(self, in_channels, out_channels, kernel_size, stride, padding, groups)
    se.add_module('relu', nn.ReLU())
    return se

  def BNReLUConv2d(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1):
    se = nn.Sequential()
    se.add_module('bn', self.BatchNorm2d(in_channels))
    se.add_module('relu', nn.ReLU())
    se.add_module(
      'conv',
      nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False),
    )
    return se

  def GAP(self, kernel_size):
    gap = nn.Sequential()
    gap.add_module('avg', nn.AvgPool2d(kernel_size=kernel_size, stride=kernel_size))
    gap.add_module('flatten', FlattenLayer())
    return gap


class ACNetBuilder(ConvBuilder):
  """acnet_builder.py: every KxK conv with 1 < K < 7 an ACBlock; the ACB of a
  conv-BN-ReLU or BN-ReLU-conv site wrapped in a Sequential as `acb`.
  Fixed: the published builder passes `use_last_bn` to ACBlock, which takes no
  such argument; it is dropped. As published, the BN-ReLU-conv ACBs get no
  `gamma_init`."""

  def __init__(self, deploy=False, gamma_init=None):
    self.deploy = deploy
    self.gamma_init = gamma_init

  def is_plain(self, kernel_size):
    return kernel_size == 1 or kernel_size >= 7

  def acb(self, in_channels, out_channels, kernel_size, stride, padding, groups, gamma_init):
    return ACBlock(
      in_channels,
      out_channels,
      kernel_size,
      stride,
      padding,
      groups=groups,
      deploy=self.deploy,
      gamma_init=gamma_init,
    )

  def Conv2d(
    self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1, bias=True
  ):
    if self.is_plain(kernel_size):
      return super().Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups, bias)
    return self.acb(
      in_channels, out_channels, kernel_size, stride, padding, groups, self.gamma_init
    )

  def Conv2dBN(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1):
    if self.is_plain(kernel_size):
      return super().Conv2dBN(in_channels, out_channels, kernel_size, stride, padding, groups)
    return self.acb(
      in_channels, out_channels, kernel_size, stride, padding, groups, self.gamma_init
    )

  def Conv2dBNReLU(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1):
    if self.is_plain(kernel_size):
      return super().Conv2dBNReLU(in_channels, out_channels, kernel_size, stride, padding, groups)
    se = nn.Sequential()
    se.add_module(
      'acb',
      self.acb(in_channels, out_channels, kernel_size, stride, padding, groups, self.gamma_init),
    )
    se.add_module('relu', nn.ReLU())
    return se

  def BNReLUConv2d(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1):
    if self.is_plain(kernel_size):
      return super().BNReLUConv2d(in_channels, out_channels, kernel_size, stride, padding, groups)
    se = nn.Sequential()
    se.add_module('bn', self.BatchNorm2d(in_channels))
    se.add_module('relu', nn.ReLU())
    se.add_module(
      'acb', self.acb(in_channels, out_channels, kernel_size, stride, padding, groups, None)
    )
    return se


# ------------------------------------------------------------------------ cfqk.py


class CFQKBN(nn.Module):
  def __init__(self, num_classes, builder, deps=(32, 32, 64)):
    super().__init__()
    self.conv1 = builder.Conv2dBNReLU(3, deps[0], kernel_size=5, stride=1, padding=2)
    self.conv2 = builder.Conv2dBNReLU(deps[0], deps[1], kernel_size=5, stride=1, padding=2)
    self.conv3 = builder.Conv2dBNReLU(deps[1], deps[2], kernel_size=5, stride=1, padding=2)
    self.fc1 = nn.Linear(3 * 3 * deps[2], 64)
    self.fc2 = nn.Linear(64, num_classes)

  def forward(self, x):
    x = F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=0)  # 15
    x = F.avg_pool2d(self.conv2(x), kernel_size=3, stride=2, padding=0)  # 7
    x = F.avg_pool2d(self.conv3(x), kernel_size=3, stride=2, padding=0)  # 3
    x = F.relu(self.fc1(x.view(x.size(0), -1)))
    return self.fc2(x)


# ------------------------------------------------------------------------- vgg.py

VGG_ORIGIN_DEPS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
VGG_POOLS_AFTER = (2, 4, 7, 10, 13)


class VCNet(nn.Module):
  def __init__(self, num_classes, builder, deps=VGG_ORIGIN_DEPS):
    super().__init__()
    self.stem = nn.Sequential()
    in_channels = 3
    for i, width in enumerate(deps, 1):
      self.stem.add_module(
        f'conv{i}', builder.Conv2dBNReLU(in_channels, width, kernel_size=3, stride=1, padding=1)
      )
      if i in VGG_POOLS_AFTER:
        self.stem.add_module(f'maxpool{VGG_POOLS_AFTER.index(i) + 1}', nn.MaxPool2d(kernel_size=2))
      in_channels = width
    self.flatten = FlattenLayer()
    self.linear1 = nn.Linear(deps[12], 512)
    self.relu = nn.ReLU()
    self.linear2 = nn.Linear(512, num_classes)

  def forward(self, x):
    return self.linear2(self.relu(self.linear1(self.flatten(self.stem(x)))))


# ------------------------------------------------------------ stagewise_resnet.py


class BasicBranch(nn.Module):
  def __init__(self, builder, in_channels, deps, stride=1):
    super().__init__()
    self.conv1 = builder.Conv2dBNReLU(in_channels, deps[0], kernel_size=3, stride=stride, padding=1)
    self.conv2 = builder.Conv2dBN(deps[0], deps[1], kernel_size=3, stride=1, padding=1)

  def forward(self, x):
    return self.conv2(self.conv1(x))


class ResNetBasicStage(nn.Module):
  def __init__(self, builder, in_planes, stage_deps, stride=1, is_first=False):
    super().__init__()
    self.num_blocks = len(stage_deps) // 2
    out_channels = stage_deps[0]
    if is_first:
      self.conv1 = builder.Conv2dBN(in_planes, out_channels, kernel_size=3, stride=1, padding=1)
    else:
      self.projection = builder.Conv2dBN(in_planes, out_channels, kernel_size=1, stride=stride)
    self.relu = nn.ReLU()
    for i in range(self.num_blocks):
      in_c = out_channels if i > 0 or is_first else in_planes
      self.__setattr__(
        f'block{i}',
        BasicBranch(builder, in_c, stage_deps[1 + i * 2 : 3 + i * 2], stride if i == 0 else 1),
      )

  def forward(self, x):
    if hasattr(self, 'conv1'):
      base_out = self.relu(self.conv1(x))
      out = base_out + self.block0(base_out)
    else:
      out = self.projection(x) + self.block0(x)
    out = self.relu(out)
    for i in range(1, self.num_blocks):
      out = self.relu(out + self.__getattr__(f'block{i}')(out))
    return out


class SRCNet(nn.Module):
  def __init__(self, block_counts, num_classes, builder):
    super().__init__()
    n = block_counts[0]
    deps = [16] * (2 * n + 1) + [32] * (2 * n + 1) + [64] * (2 * n + 1)
    per_stage = len(deps) // 3
    self.stage1 = ResNetBasicStage(builder, 3, deps[0:per_stage], 1, is_first=True)
    self.stage2 = ResNetBasicStage(builder, deps[per_stage - 1], deps[per_stage : 2 * per_stage], 2)
    self.stage3 = ResNetBasicStage(builder, deps[2 * per_stage - 1], deps[2 * per_stage :], 2)
    self.gap = builder.GAP(kernel_size=8)
    self.linear = nn.Linear(deps[-1], num_classes)

  def forward(self, x):
    return self.linear(self.gap(self.stage3(self.stage2(self.stage1(x)))))


class BottleneckBranch(nn.Module):
  def __init__(self, builder, in_channels, deps, stride=1):
    super().__init__()
    self.conv1 = builder.Conv2dBNReLU(in_channels, deps[0], kernel_size=1)
    self.conv2 = builder.Conv2dBNReLU(deps[0], deps[1], kernel_size=3, stride=stride, padding=1)
    self.conv3 = builder.Conv2dBN(deps[1], deps[2], kernel_size=1)

  def forward(self, x):
    return self.conv3(self.conv2(self.conv1(x)))


class ResNetBottleneckStage(nn.Module):
  def __init__(self, builder, in_planes, stage_deps, stride=1):
    super().__init__()
    self.num_blocks = (len(stage_deps) - 1) // 3
    out_channels = stage_deps[3]
    self.relu = nn.ReLU()
    self.projection = builder.Conv2dBN(in_planes, stage_deps[0], kernel_size=1, stride=stride)
    for i in range(self.num_blocks):
      self.__setattr__(
        f'block{i}',
        BottleneckBranch(
          builder,
          in_planes if i == 0 else out_channels,
          stage_deps[1 + i * 3 : 4 + i * 3],
          stride if i == 0 else 1,
        ),
      )

  def forward(self, x):
    out = self.relu(self.projection(x) + self.block0(x))
    for i in range(1, self.num_blocks):
      out = self.relu(out + self.__getattr__(f'block{i}')(out))
    return out


class SBottleneckResNet(nn.Module):
  """ResNet-50 as `sres50`: constants.RESNET50_ORIGIN_DEPS_FLATTENED's widths."""

  def __init__(self, builder, num_blocks=(3, 4, 6, 3), num_classes=1000):
    super().__init__()
    self.conv1 = builder.Conv2dBNReLU(3, 64, kernel_size=7, stride=2, padding=3)
    self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    in_planes = 64
    for stage, (count, width) in enumerate(zip(num_blocks, (64, 128, 256, 512)), 1):
      deps = [width * 4] + [width, width, width * 4] * count
      self.add_module(
        f'stage{stage}', ResNetBottleneckStage(builder, in_planes, deps, 1 if stage == 1 else 2)
      )
      in_planes = width * 4
    self.gap = builder.GAP(kernel_size=7)
    self.fc = nn.Linear(2048, num_classes)

  def forward(self, x):
    out = self.maxpool(self.conv1(x))
    out = self.stage4(self.stage3(self.stage2(self.stage1(out))))
    return self.fc(self.gap(out))


# ------------------------------------------------------------------------- wrn.py


class WRNCifarBlock(nn.Module):
  def __init__(self, input_channels, block_channels, stride, projection_shortcut, builder):
    super().__init__()
    if projection_shortcut:
      self.proj = builder.BNReLUConv2d(
        input_channels, block_channels[1], kernel_size=1, stride=stride, padding=0
      )
    else:
      self.proj = nn.Identity()
    self.conv1 = builder.BNReLUConv2d(
      input_channels, block_channels[0], kernel_size=3, stride=stride, padding=1
    )
    self.dropout = nn.Identity()
    self.conv2 = builder.BNReLUConv2d(
      block_channels[0], block_channels[1], kernel_size=3, stride=1, padding=1
    )

  def forward(self, input):
    x = self.conv2(self.dropout(self.conv1(input)))
    x += self.proj(input)
    return x


class WRNCifarNet(nn.Module):
  """WRN-16-8 as `wrnc16plain` (no dropout)."""

  def __init__(self, num_classes, builder):
    super().__init__()
    widths = (128, 256, 512)
    self.conv1 = builder.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
    in_channels = 16
    for stage, width in enumerate(widths, 1):
      se = nn.Sequential()
      for i in range(2):
        se.add_module(
          f'block{i + 1}',
          WRNCifarBlock(
            in_channels if i == 0 else width,
            (width, width),
            2 if i == 0 and stage > 1 else 1,
            i == 0,
            builder,
          ),
        )
      self.add_module(f'stage{stage}', se)
      in_channels = width
    self.last_bn = builder.BatchNorm2d(widths[-1])
    self.linear = nn.Linear(widths[-1], num_classes)

  def forward(self, x):
    out = self.last_bn(self.stage3(self.stage2(self.stage1(self.conv1(x)))))
    out = F.avg_pool2d(out, kernel_size=8, stride=1, padding=0)
    return self.linear(out.view(out.size(0), -1))


# ---------------------------------------------------------------------- resnet.py


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, builder, in_planes, planes, stride=1):
    super().__init__()
    self.relu = nn.ReLU()
    if stride != 1 or in_planes != planes:
      self.shortcut = builder.Conv2dBN(in_planes, planes, kernel_size=1, stride=stride)
    else:
      self.shortcut = nn.Identity()
    self.conv1 = builder.Conv2dBNReLU(in_planes, planes, kernel_size=3, stride=stride, padding=1)
    self.conv2 = builder.Conv2dBN(planes, planes, kernel_size=3, stride=1, padding=1)

  def forward(self, x):
    return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNet(nn.Module):
  """ResNet-18 and -34 as `sres18`, `sres34`."""

  def __init__(self, builder, num_blocks, num_classes=1000):
    super().__init__()
    self.in_planes = 64
    self.conv1 = builder.Conv2dBNReLU(3, 64, kernel_size=7, stride=2, padding=3)
    for stage, (count, planes) in enumerate(zip(num_blocks, (64, 128, 256, 512)), 1):
      blocks = []
      for stride in [1 if stage == 1 else 2] + [1] * (count - 1):
        blocks.append(BasicBlock(builder, self.in_planes, planes, stride))
        self.in_planes = planes
      self.add_module(f'stage{stage}', nn.Sequential(*blocks))
    self.gap = builder.GAP(kernel_size=7)
    self.linear = nn.Linear(512, num_classes)

  def forward(self, x):
    out = F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)
    out = self.stage4(self.stage3(self.stage2(self.stage1(out))))
    return self.linear(self.gap(out))


# ---------------------------------------------------------------- mobilenetv1.py

MI1_ORIGIN_DEPS = [
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


class MobileV1Block(nn.Module):
  def __init__(self, builder, in_planes, out_planes, stride=1):
    super().__init__()
    self.depthwise = builder.Conv2dBNReLU(
      in_planes, in_planes, kernel_size=3, stride=stride, padding=1, groups=in_planes
    )
    self.pointwise = builder.Conv2dBNReLU(in_planes, out_planes, kernel_size=1, stride=1, padding=0)

  def forward(self, x):
    return self.pointwise(self.depthwise(x))


class MobileV1ImagenetNet(nn.Module):
  def __init__(self, builder, num_classes=1000, deps=MI1_ORIGIN_DEPS):
    super().__init__()
    self.conv1 = builder.Conv2dBNReLU(3, deps[0], kernel_size=3, stride=2, padding=1)
    self.stem = nn.Sequential(
      *[
        MobileV1Block(
          builder, int(deps[i * 2 + 1]), int(deps[i * 2 + 2]), 2 if i in (1, 3, 5, 11) else 1
        )
        for i in range(13)
      ]
    )
    self.gap = builder.GAP(kernel_size=7)
    self.linear = nn.Linear(deps[-1], num_classes)

  def forward(self, x):
    return self.linear(self.gap(self.stem(self.conv1(x))))


# Our model name -> their model, built with a builder.
MODELS = {
  'cfqkbnc': lambda builder, classes: CFQKBN(classes, builder),
  'vc': lambda builder, classes: VCNet(classes, builder),
  'rc56': lambda builder, classes: SRCNet((9, 9, 9), classes, builder),
  'wrnc16': lambda builder, classes: WRNCifarNet(classes, builder),
  'resnet18': lambda builder, classes: ResNet(builder, (2, 2, 2, 2), classes),
  'resnet34': lambda builder, classes: ResNet(builder, (3, 4, 6, 3), classes),
  'resnet50': lambda builder, classes: SBottleneckResNet(builder, num_classes=classes),
  'mobilenet_v1': lambda builder, classes: MobileV1ImagenetNet(builder, classes),
}


def build(model: str, kind: str, num_classes: int, gamma_init: float | None = None) -> nn.Module:
  """`kind`: 'normal' (ConvBuilder), 'acnet' or 'acnet_deploy' (ACNetBuilder)."""
  builder = ConvBuilder() if kind == 'normal' else ACNetBuilder(kind == 'acnet_deploy', gamma_init)
  return MODELS[model](builder, num_classes)

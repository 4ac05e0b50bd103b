"""The authors' blocks: ACNet's ACBlock and DBB's DiverseBranchBlock, as published
(DingXiaoH/ACNet acnet/acb.py; DingXiaoH/DiverseBranchBlock diversebranchblock.py,
dbb_transforms.py, convnet_utils.py's ConvBN), with their deploy conversions."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class ACBlock(nn.Module):
  """acb.py. Fixed: DBB's convnet_utils passes `nonlinear=nn.ReLU()` to it,
  which the published ACBlock does not take; here it takes it and applies it
  last (no parameters, so no key changes)."""

  def __init__(
    self,
    in_channels,
    out_channels,
    kernel_size,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    padding_mode='zeros',
    deploy=False,
    use_affine=True,
    reduce_gamma=False,
    gamma_init=None,
    nonlinear=None,
  ):
    super().__init__()
    self.deploy = deploy
    self.nonlinear = nn.Identity() if nonlinear is None else nonlinear
    if deploy:
      self.fused_conv = nn.Conv2d(
        in_channels,
        out_channels,
        (kernel_size, kernel_size),
        stride,
        padding,
        dilation,
        groups,
        bias=True,
        padding_mode=padding_mode,
      )
      return
    self.square_conv = nn.Conv2d(
      in_channels,
      out_channels,
      (kernel_size, kernel_size),
      stride,
      padding,
      dilation,
      groups,
      bias=False,
      padding_mode=padding_mode,
    )
    self.square_bn = nn.BatchNorm2d(out_channels, affine=use_affine)
    if padding - kernel_size // 2 >= 0:
      # The 1xK and Kx1 layers' padding aligns their windows with the KxK one's.
      self.crop = 0
      hor_padding = [padding - kernel_size // 2, padding]
      ver_padding = [padding, padding - kernel_size // 2]
    else:
      # A negative padding is a crop, done by hand.
      self.crop = kernel_size // 2 - padding
      hor_padding = [0, padding]
      ver_padding = [padding, 0]
    self.ver_conv = nn.Conv2d(
      in_channels,
      out_channels,
      (kernel_size, 1),
      stride,
      ver_padding,
      dilation,
      groups,
      bias=False,
      padding_mode=padding_mode,
    )
    self.hor_conv = nn.Conv2d(
      in_channels,
      out_channels,
      (1, kernel_size),
      stride,
      hor_padding,
      dilation,
      groups,
      bias=False,
      padding_mode=padding_mode,
    )
    self.ver_bn = nn.BatchNorm2d(out_channels, affine=use_affine)
    self.hor_bn = nn.BatchNorm2d(out_channels, affine=use_affine)
    if reduce_gamma:
      self.init_gamma(1.0 / 3)
    if gamma_init is not None:
      assert not reduce_gamma
      self.init_gamma(gamma_init)

  def _fuse_bn_tensor(self, conv, bn):
    std = (bn.running_var + bn.eps).sqrt()
    t = (bn.weight / std).reshape(-1, 1, 1, 1)
    return conv.weight * t, bn.bias - bn.running_mean * bn.weight / std

  def _add_to_square_kernel(self, square_kernel, asym_kernel):
    asym_h, asym_w = asym_kernel.size(2), asym_kernel.size(3)
    square_h, square_w = square_kernel.size(2), square_kernel.size(3)
    square_kernel[
      :,
      :,
      square_h // 2 - asym_h // 2 : square_h // 2 - asym_h // 2 + asym_h,
      square_w // 2 - asym_w // 2 : square_w // 2 - asym_w // 2 + asym_w,
    ] += asym_kernel

  def get_equivalent_kernel_bias(self):
    hor_k, hor_b = self._fuse_bn_tensor(self.hor_conv, self.hor_bn)
    ver_k, ver_b = self._fuse_bn_tensor(self.ver_conv, self.ver_bn)
    square_k, square_b = self._fuse_bn_tensor(self.square_conv, self.square_bn)
    self._add_to_square_kernel(square_k, hor_k)
    self._add_to_square_kernel(square_k, ver_k)
    return square_k, hor_b + ver_b + square_b

  def switch_to_deploy(self):
    deploy_k, deploy_b = self.get_equivalent_kernel_bias()
    self.deploy = True
    conv = self.square_conv
    self.fused_conv = nn.Conv2d(
      conv.in_channels,
      conv.out_channels,
      conv.kernel_size,
      conv.stride,
      conv.padding,
      conv.dilation,
      conv.groups,
      bias=True,
      padding_mode=conv.padding_mode,
    )
    for name in ('square_conv', 'square_bn', 'hor_conv', 'hor_bn', 'ver_conv', 'ver_bn'):
      self.__delattr__(name)
    self.fused_conv.weight.data = deploy_k.detach()
    self.fused_conv.bias.data = deploy_b.detach()

  def init_gamma(self, gamma_value):
    for bn in (self.square_bn, self.ver_bn, self.hor_bn):
      nn.init.constant_(bn.weight, gamma_value)

  def forward(self, input):
    if self.deploy:
      return self.nonlinear(self.fused_conv(input))
    square_outputs = self.square_bn(self.square_conv(input))
    if self.crop > 0:
      ver_input = input[:, :, :, self.crop : -self.crop]
      hor_input = input[:, :, self.crop : -self.crop, :]
    else:
      ver_input = hor_input = input
    vertical_outputs = self.ver_bn(self.ver_conv(ver_input))
    horizontal_outputs = self.hor_bn(self.hor_conv(hor_input))
    return self.nonlinear(square_outputs + vertical_outputs + horizontal_outputs)


# ----------------------------------------------------------------- dbb_transforms.py


def transI_fusebn(kernel, bn):
  gamma = bn.weight
  std = (bn.running_var + bn.eps).sqrt()
  return kernel * ((gamma / std).reshape(-1, 1, 1, 1)), bn.bias - bn.running_mean * gamma / std


def transIII_1x1_kxk(k1, b1, k2, b2, groups):
  if groups == 1:
    k = F.conv2d(k2, k1.permute(1, 0, 2, 3))
    b_hat = (k2 * b1.reshape(1, -1, 1, 1)).sum((1, 2, 3))
  else:
    k_slices, b_slices = [], []
    k1_T = k1.permute(1, 0, 2, 3)
    k1_group_width = k1.size(0) // groups
    k2_group_width = k2.size(0) // groups
    for g in range(groups):
      k1_T_slice = k1_T[:, g * k1_group_width : (g + 1) * k1_group_width, :, :]
      k2_slice = k2[g * k2_group_width : (g + 1) * k2_group_width, :, :, :]
      k_slices.append(F.conv2d(k2_slice, k1_T_slice))
      b_slices.append(
        (k2_slice * b1[g * k1_group_width : (g + 1) * k1_group_width].reshape(1, -1, 1, 1)).sum(
          (1, 2, 3)
        )
      )
    k, b_hat = torch.cat(k_slices, dim=0), torch.cat(b_slices)
  return k, b_hat + b2


def transV_avg(channels, kernel_size, groups):
  input_dim = channels // groups
  k = torch.zeros((channels, input_dim, kernel_size, kernel_size))
  k[np.arange(channels), np.tile(np.arange(input_dim), groups), :, :] = 1.0 / kernel_size**2
  return k


def transVI_multiscale(kernel, target_kernel_size):
  h_pad = (target_kernel_size - kernel.size(2)) // 2
  w_pad = (target_kernel_size - kernel.size(3)) // 2
  return F.pad(kernel, [h_pad, h_pad, w_pad, w_pad])


# -------------------------------------------------------------- diversebranchblock.py


def conv_bn(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1):
  se = nn.Sequential()
  se.add_module(
    'conv',
    nn.Conv2d(
      in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=False
    ),
  )
  se.add_module('bn', nn.BatchNorm2d(out_channels, affine=True))
  return se


class IdentityBasedConv1x1(nn.Conv2d):
  def __init__(self, channels, groups=1):
    super().__init__(
      channels, channels, kernel_size=1, stride=1, padding=0, groups=groups, bias=False
    )
    assert channels % groups == 0
    input_dim = channels // groups
    id_value = np.zeros((channels, input_dim, 1, 1))
    for i in range(channels):
      id_value[i, i % input_dim, 0, 0] = 1
    self.id_tensor = torch.from_numpy(id_value).type_as(self.weight)
    nn.init.zeros_(self.weight)

  def forward(self, input):
    kernel = self.weight + self.id_tensor.to(self.weight.device)
    return F.conv2d(
      input, kernel, None, stride=1, padding=0, dilation=self.dilation, groups=self.groups
    )

  def get_actual_kernel(self):
    return self.weight + self.id_tensor.to(self.weight.device)


class BNAndPadLayer(nn.Module):
  def __init__(
    self, pad_pixels, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True
  ):
    super().__init__()
    self.bn = nn.BatchNorm2d(num_features, eps, momentum, affine, track_running_stats)
    self.pad_pixels = pad_pixels

  def forward(self, input):
    output = self.bn(input)
    if self.pad_pixels > 0:
      bn = self.bn
      if bn.affine:
        pad_values = bn.bias.detach() - bn.running_mean * bn.weight.detach() / torch.sqrt(
          bn.running_var + bn.eps
        )
      else:
        pad_values = -bn.running_mean / torch.sqrt(bn.running_var + bn.eps)
      output = F.pad(output, [self.pad_pixels] * 4)
      pad_values = pad_values.view(1, -1, 1, 1)
      output[:, :, 0 : self.pad_pixels, :] = pad_values
      output[:, :, -self.pad_pixels :, :] = pad_values
      output[:, :, :, 0 : self.pad_pixels] = pad_values
      output[:, :, :, -self.pad_pixels :] = pad_values
    return output

  weight = property(lambda self: self.bn.weight)
  bias = property(lambda self: self.bn.bias)
  running_mean = property(lambda self: self.bn.running_mean)
  running_var = property(lambda self: self.bn.running_var)
  eps = property(lambda self: self.bn.eps)


class DiverseBranchBlock(nn.Module):
  def __init__(
    self,
    in_channels,
    out_channels,
    kernel_size,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    internal_channels_1x1_3x3=None,
    deploy=False,
    nonlinear=None,
  ):
    super().__init__()
    self.deploy = deploy
    self.nonlinear = nn.Identity() if nonlinear is None else nonlinear
    self.kernel_size = kernel_size
    self.out_channels = out_channels
    self.groups = groups
    assert padding == kernel_size // 2
    if deploy:
      self.dbb_reparam = nn.Conv2d(
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=True
      )
      return
    self.dbb_origin = conv_bn(
      in_channels, out_channels, kernel_size, stride, padding, dilation, groups
    )
    self.dbb_avg = nn.Sequential()
    if groups < out_channels:
      self.dbb_avg.add_module(
        'conv', nn.Conv2d(in_channels, out_channels, 1, 1, 0, groups=groups, bias=False)
      )
      self.dbb_avg.add_module('bn', BNAndPadLayer(padding, out_channels))
      self.dbb_avg.add_module('avg', nn.AvgPool2d(kernel_size, stride, 0))
      self.dbb_1x1 = conv_bn(in_channels, out_channels, 1, stride, 0, groups=groups)
    else:
      self.dbb_avg.add_module('avg', nn.AvgPool2d(kernel_size, stride, padding))
    self.dbb_avg.add_module('avgbn', nn.BatchNorm2d(out_channels))
    if internal_channels_1x1_3x3 is None:
      # For MobileNet, 2x internal channels are better.
      internal_channels_1x1_3x3 = in_channels if groups < out_channels else 2 * in_channels
    self.dbb_1x1_kxk = nn.Sequential()
    if internal_channels_1x1_3x3 == in_channels:
      self.dbb_1x1_kxk.add_module('idconv1', IdentityBasedConv1x1(in_channels, groups))
    else:
      self.dbb_1x1_kxk.add_module(
        'conv1',
        nn.Conv2d(in_channels, internal_channels_1x1_3x3, 1, 1, 0, groups=groups, bias=False),
      )
    self.dbb_1x1_kxk.add_module('bn1', BNAndPadLayer(padding, internal_channels_1x1_3x3))
    self.dbb_1x1_kxk.add_module(
      'conv2',
      nn.Conv2d(
        internal_channels_1x1_3x3, out_channels, kernel_size, stride, 0, groups=groups, bias=False
      ),
    )
    self.dbb_1x1_kxk.add_module('bn2', nn.BatchNorm2d(out_channels))

  def get_equivalent_kernel_bias(self):
    k_origin, b_origin = transI_fusebn(self.dbb_origin.conv.weight, self.dbb_origin.bn)
    if hasattr(self, 'dbb_1x1'):
      k_1x1, b_1x1 = transI_fusebn(self.dbb_1x1.conv.weight, self.dbb_1x1.bn)
      k_1x1 = transVI_multiscale(k_1x1, self.kernel_size)
    else:
      k_1x1, b_1x1 = 0, 0
    if hasattr(self.dbb_1x1_kxk, 'idconv1'):
      k_first = self.dbb_1x1_kxk.idconv1.get_actual_kernel()
    else:
      k_first = self.dbb_1x1_kxk.conv1.weight
    k_first, b_first = transI_fusebn(k_first, self.dbb_1x1_kxk.bn1)
    k_second, b_second = transI_fusebn(self.dbb_1x1_kxk.conv2.weight, self.dbb_1x1_kxk.bn2)
    k_1x1_kxk, b_1x1_kxk = transIII_1x1_kxk(k_first, b_first, k_second, b_second, self.groups)
    k_avg = transV_avg(self.out_channels, self.kernel_size, self.groups)
    k_avg_second, b_avg_second = transI_fusebn(k_avg, self.dbb_avg.avgbn)
    if hasattr(self.dbb_avg, 'conv'):
      k_avg_first, b_avg_first = transI_fusebn(self.dbb_avg.conv.weight, self.dbb_avg.bn)
      k_1x1_avg, b_1x1_avg = transIII_1x1_kxk(
        k_avg_first, b_avg_first, k_avg_second, b_avg_second, self.groups
      )
    else:
      k_1x1_avg, b_1x1_avg = k_avg_second, b_avg_second
    return (k_origin + k_1x1 + k_1x1_kxk + k_1x1_avg, b_origin + b_1x1 + b_1x1_kxk + b_1x1_avg)

  def switch_to_deploy(self):
    kernel, bias = self.get_equivalent_kernel_bias()
    conv = self.dbb_origin.conv
    self.dbb_reparam = nn.Conv2d(
      conv.in_channels,
      conv.out_channels,
      conv.kernel_size,
      conv.stride,
      conv.padding,
      conv.dilation,
      conv.groups,
      bias=True,
    )
    self.dbb_reparam.weight.data = kernel.detach()
    self.dbb_reparam.bias.data = bias.detach()
    for name in ('dbb_origin', 'dbb_avg', 'dbb_1x1', 'dbb_1x1_kxk'):
      if hasattr(self, name):
        self.__delattr__(name)

  def forward(self, inputs):
    if hasattr(self, 'dbb_reparam'):
      return self.nonlinear(self.dbb_reparam(inputs))
    out = self.dbb_origin(inputs)
    if hasattr(self, 'dbb_1x1'):
      out += self.dbb_1x1(inputs)
    out += self.dbb_avg(inputs)
    out += self.dbb_1x1_kxk(inputs)
    return self.nonlinear(out)


class ConvBN(nn.Module):
  """convnet_utils.py's baseline conv site (a conv with bias once deployed)."""

  def __init__(
    self,
    in_channels,
    out_channels,
    kernel_size,
    stride,
    padding,
    dilation,
    groups,
    deploy=False,
    nonlinear=None,
  ):
    super().__init__()
    self.nonlinear = nn.Identity() if nonlinear is None else nonlinear
    self.conv = nn.Conv2d(
      in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=deploy
    )
    if not deploy:
      self.bn = nn.BatchNorm2d(out_channels)

  def forward(self, x):
    return self.nonlinear(self.bn(self.conv(x)) if hasattr(self, 'bn') else self.conv(x))

  def switch_to_deploy(self):
    kernel, bias = transI_fusebn(self.conv.weight, self.bn)
    conv = nn.Conv2d(
      self.conv.in_channels,
      self.conv.out_channels,
      self.conv.kernel_size,
      self.conv.stride,
      self.conv.padding,
      self.conv.dilation,
      self.conv.groups,
      bias=True,
    )
    conv.weight.data = kernel.detach()
    conv.bias.data = bias.detach()
    self.__delattr__('conv')
    self.__delattr__('bn')
    self.conv = conv

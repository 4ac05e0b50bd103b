"""Weights as the authors save them, and random weights worth comparing.

ACNet's engine: save_checkpoint -> .pth of {'model': state dict, 'optimizer', 'iteration'};
                save_hdf5 -> .hdf5 (utils/misc.py); acnet_fusion.convert_acnet_weights
                turns an ACNet .hdf5 into its deploy .hdf5
DBB:            train.py's save_checkpoint -> .pth.tar of {'state_dict' (DataParallel's
                `module.` keys), 'epoch', 'arch', 'best_acc1', 'optimizer'};
                convert.py -> .pth of the deploy model's state dict
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from authors_torch.blocks import IdentityBasedConv1x1


def numpy_state_dict(model: nn.Module) -> dict[str, np.ndarray]:
  """engine.save_hdf5's dict: the state dict as numpy, `module.` stripped."""
  return {
    key[len('module.') :] if key.startswith('module.') else key: value.cpu().numpy()
    for key, value in model.state_dict().items()
  }


def save_hdf5(numpy_dict: dict[str, np.ndarray], path: Path) -> Path:
  """utils/misc.py's save_hdf5."""
  with h5py.File(path, 'w') as f:
    for key, value in numpy_dict.items():
      f.create_dataset(str(key).replace('/', '+'), data=value)
  return path


def save_acnet_engine_checkpoint(model: nn.Module, path: Path) -> Path:
  """utils/engine.py's save_checkpoint."""
  optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
  torch.save(
    {'model': model.state_dict(), 'optimizer': optimizer.state_dict(), 'iteration': 100}, path
  )
  return path


def save_dbb_training_checkpoint(model: nn.Module, path: Path, arch: str) -> Path:
  """train.py's save_checkpoint, the model inside DataParallel as it trains."""
  optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
  torch.save(
    {
      'epoch': 1,
      'arch': arch,
      'state_dict': nn.DataParallel(model).state_dict(),
      'best_acc1': torch.tensor(0.1),
      'optimizer': optimizer.state_dict(),
    },
    path,
  )
  return path


def save_state_dict(model: nn.Module, path: Path) -> Path:
  """convert.py's torch.save(model.state_dict(), path)."""
  torch.save(model.state_dict(), path)
  return path


# ---------------------------------------------------------- acnet/acnet_fusion.py

SQUARE_KERNEL_KEYWORD = 'square_conv.weight'


def _fuse_kernel(kernel, gamma, std):
  return kernel * (gamma / std).reshape(-1, 1, 1, 1)


def _add_to_square_kernel(square_kernel, asym_kernel):
  asym_h, asym_w = asym_kernel.shape[2:]
  square_h, square_w = square_kernel.shape[2:]
  square_kernel[
    :,
    :,
    square_h // 2 - asym_h // 2 : square_h // 2 - asym_h // 2 + asym_h,
    square_w // 2 - asym_w // 2 : square_w // 2 - asym_w // 2 + asym_w,
  ] += asym_kernel


def convert_acnet_weights(
  train_dict: dict[str, np.ndarray], eps: float = 1e-5
) -> dict[str, np.ndarray]:
  """convert_acnet_weights on the arrays of a training-form .hdf5."""
  deploy_dict = {}
  for square_name in [name for name in train_dict if SQUARE_KERNEL_KEYWORD in name]:
    value = lambda part: train_dict[square_name.replace(SQUARE_KERNEL_KEYWORD, part)]
    kernels, biases = [], []
    for branch in ('square', 'ver', 'hor'):
      std = np.sqrt(value(f'{branch}_bn.running_var') + eps)
      gamma = value(f'{branch}_bn.weight')
      kernels.append(_fuse_kernel(value(f'{branch}_conv.weight'), gamma, std))
      biases.append(value(f'{branch}_bn.bias') - value(f'{branch}_bn.running_mean') * gamma / std)
    fused_kernel = kernels[0]
    _add_to_square_kernel(fused_kernel, kernels[1])
    _add_to_square_kernel(fused_kernel, kernels[2])
    deploy_dict[square_name.replace(SQUARE_KERNEL_KEYWORD, 'fused_conv.weight')] = fused_kernel
    deploy_dict[square_name.replace(SQUARE_KERNEL_KEYWORD, 'fused_conv.bias')] = sum(biases)
  for key, value in train_dict.items():
    if 'hor_' not in key and 'ver_' not in key and 'square_' not in key:
      deploy_dict[key] = value
  return deploy_dict


def load_numpy_state_dict(model: nn.Module, numpy_dict: dict[str, np.ndarray]) -> nn.Module:
  """engine.load_hdf5: every parameter and buffer from the dict."""
  model.load_state_dict(
    {key: torch.from_numpy(np.asarray(value)) for key, value in numpy_dict.items()}, strict=True
  )
  return model


# ------------------------------------------------------------------ random weights


@torch.no_grad()
def randomize(model: nn.Module, x: torch.Tensor, seed: int) -> nn.Module:
  """Every BN's scale and bias at random, the identity-based 1x1 convs away
  from the identity, then running statistics those of `x` (one train-mode
  pass, cumulative average): eval-mode activations of a sensible scale, with
  every term of a fusion non-trivial."""
  generator = torch.Generator().manual_seed(seed)
  uniform = lambda t, low, high: t.copy_(
    low + (high - low) * torch.rand(t.shape, generator=generator)
  )
  for module in model.modules():
    if isinstance(module, nn.BatchNorm2d):
      uniform(module.weight, 0.5, 1.5)
      uniform(module.bias, -0.3, 0.3)
      module.momentum = None  # A cumulative average: one pass sets the batch's statistics.
    elif isinstance(module, IdentityBasedConv1x1):
      uniform(module.weight, -0.1, 0.1)
  model.train()
  model(x)
  for module in model.modules():
    if isinstance(module, nn.BatchNorm2d):
      module.momentum = 0.1
  return model.eval()

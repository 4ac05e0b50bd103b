"""One of the authors' models with random weights, saved the way their code saves it."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from authors_torch import acnet_models, dbb_models, saving

# How each repository saves each kind here: ACNet's engine writes .pth and
# .hdf5, its deploy form is the .hdf5 of convert_acnet_weights; DBB's training
# writes a DataParallel .pth.tar, its convert.py a plain .pth.
ACNET_SAVES = ('pth', 'hdf5')


def build(
  layout: str, model: str, kind: str, num_classes: int, gamma_init: float | None = None
) -> nn.Module:
  """The training-time model of `kind` (normal, acnet, dbb) in a repository's code."""
  if layout == 'acnet':
    return acnet_models.build(model, kind, num_classes, gamma_init)
  return dbb_models.build(model, kind, num_classes)


def saved_checkpoint(
  layout: str,
  model: str,
  kind: str,
  num_classes: int,
  x: torch.Tensor,
  directory: Path,
  save: str = 'pth',
  seed: int = 0,
) -> tuple[Path, nn.Module]:
  """(the file, the model in eval mode) of random weights of `kind` (normal,
  acnet, dbb, or one of them + '_deploy'); `save` picks ACNet's .pth or .hdf5."""
  trained_kind = kind.removesuffix('_deploy')
  net = saving.randomize(build(layout, model, trained_kind, num_classes), x, seed)
  if layout == 'acnet':
    weights = saving.numpy_state_dict(net)
    if kind.endswith('_deploy'):
      weights = saving.convert_acnet_weights(weights)
      net = saving.load_numpy_state_dict(build(layout, model, kind, num_classes), weights).eval()
      return saving.save_hdf5(weights, directory / 'finish_deploy.hdf5'), net
    if save == 'hdf5':
      return saving.save_hdf5(weights, directory / 'finish.hdf5'), net
    return saving.save_acnet_engine_checkpoint(net, directory / 'latest.pth'), net
  if kind.endswith('_deploy'):
    net = dbb_models.switch_to_deploy(net)
    return saving.save_state_dict(net, directory / f'{model}_{kind}.pth'), net
  return saving.save_dbb_training_checkpoint(net, directory / 'checkpoint.pth.tar', model), net

"""The authors' checkpoint files as flat {key: numpy array} state dicts.

They save two ways (DingXiaoH/ACNet `utils/engine.py`, DingXiaoH/DiverseBranchBlock
`train.py`): a `.pth` of `torch.save`, either the state dict itself or a dict
holding it under `model` (ACNet's engine) or `state_dict` (DBB's training,
keys prefixed `module.` by DataParallel); and an `.hdf5` of the state dict's
arrays (`save_hdf5`: one dataset per key, '/' written as '+').

A .pth file is a pickle of torch tensors that only torch reads, so it is read
through torch, imported here only then; an .hdf5 file needs h5py only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from acnet_jax.errors import InputError

StateDict = dict[str, np.ndarray]
# Where the authors' training code nests the state dict in a .pth file.
NESTED_STATE_DICT_KEYS = ('model', 'state_dict')
DATA_PARALLEL_PREFIX = 'module.'
HDF5_SUFFIXES = ('.hdf5', '.h5')
PTH_SUFFIXES = ('.pth', '.pt', '.tar')


def read_state_dict(path: str) -> StateDict:
  """The state dict saved in `path` (.pth or .hdf5), `module.` prefixes stripped."""
  if not os.path.isfile(path):
    raise InputError(f'no checkpoint file {path}')
  if path.endswith(HDF5_SUFFIXES):
    state = read_hdf5(path)
  elif path.endswith(PTH_SUFFIXES):
    state = read_pth(path)
  else:
    raise InputError(
      f'{path} is neither a .pth file ({", ".join(PTH_SUFFIXES)}) nor an .hdf5 '
      f'file ({", ".join(HDF5_SUFFIXES)}), the two ways the authors save weights'
    )
  return {strip_data_parallel(key): value for key, value in state.items()}


def strip_data_parallel(key: str) -> str:
  return key[len(DATA_PARALLEL_PREFIX) :] if key.startswith(DATA_PARALLEL_PREFIX) else key


def read_hdf5(path: str) -> StateDict:
  import h5py  # noqa: PLC0415  (a dependency of TensorFlow's; only this format needs it)

  try:
    with h5py.File(path, 'r') as f:
      return {key.replace('+', '/'): np.asarray(f[key]) for key in f.keys()}
  except OSError as error:
    raise InputError(f'{path} is not a readable HDF5 file: {error}') from None


def read_pth(path: str) -> StateDict:
  try:
    import torch  # noqa: PLC0415  (an optional extra: only .pth files need it)
  except ImportError:
    raise InputError(
      f'reading {path} needs PyTorch (a .pth file is a pickle of torch tensors): '
      "pip install 'acnet_jax[torch]', or convert the weights to .hdf5 with the "
      "authors' save_hdf5"
    ) from None
  try:
    # weights_only: tensors and plain containers, no code from the file runs.
    saved = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as error:  # torch raises many kinds on a bad or foreign file.
    raise InputError(f'{path} does not load as a PyTorch checkpoint: {error}') from None
  state = unwrap_state_dict(saved, path)
  return {
    key: tensor_to_numpy(value) for key, value in state.items() if isinstance(value, torch.Tensor)
  }


def unwrap_state_dict(saved: Any, path: str) -> Mapping[str, Any]:
  """The state dict itself, or the one the authors' training code nests in a dict."""
  if not isinstance(saved, Mapping):
    raise InputError(
      f'{path} holds a {type(saved).__name__}, not a state dict (a dict of '
      'tensors) nor a dict with one under "model" or "state_dict"'
    )
  for key in NESTED_STATE_DICT_KEYS:
    if isinstance(saved.get(key), Mapping):
      return saved[key]
  return saved


def tensor_to_numpy(tensor: Any) -> np.ndarray:
  return tensor.detach().cpu().numpy()

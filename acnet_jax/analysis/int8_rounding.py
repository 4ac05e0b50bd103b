"""What per-channel int8 does to each region of a fused KxK kernel.

ONNX Runtime's static quantizer (acnet_jax/deploy/int8.py) gives each output
channel of a conv one symmetric int8 scale, max |w| / 127 over the channel's
K x K x C_in weights. Where ACNet strengthens the skeleton, the channel's
largest weight sits on it and the corners' smaller weights get fewer steps of
that scale: `levels` (mean |w| in steps) says how many, `relative_error`
(mean |w - q(w)| / mean |w|) what rounding costs there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from acnet_jax.analysis import skeleton

INT8_MAX = 127  # Symmetric int8 weights: -127..127, as ONNX Runtime's quantizer.


def per_channel_scale(kernel: np.ndarray) -> np.ndarray:
  """HWIO kernel -> one scale per output channel (a channel of zeros gets 1)."""
  largest = np.abs(kernel).max(axis=(0, 1, 2))
  return np.where(largest > 0, largest / INT8_MAX, 1.0)


def quantized(kernel: np.ndarray) -> np.ndarray:
  scale = per_channel_scale(kernel)
  return np.clip(np.round(kernel / scale), -INT8_MAX, INT8_MAX) * scale


def region_rounding(kernel: Any) -> dict[str, dict[str, float]]:
  """region -> {'levels', 'relative_error'} of one HWIO kernel, for the
  regions that exist at its size (skeleton, corners, border for K >= 5)."""
  kernel = np.asarray(kernel, np.float64)
  steps = np.abs(kernel) / per_channel_scale(kernel)
  error = np.abs(kernel - quantized(kernel))
  found = {}
  for name, mask_of in skeleton.REGIONS.items():
    mask = mask_of(kernel.shape[0])
    if not mask.any():
      continue
    magnitude = np.abs(kernel[mask]).mean()
    found[name] = {
      'levels': float(steps[mask].mean()),
      'relative_error': float(error[mask].mean() / magnitude) if magnitude else 0.0,
    }
  return found


def model_rounding(params: Any) -> dict[str, Any]:
  """'layers': path -> `region_rounding`, for every fused KxK kernel; 'mean':
  region -> each number's mean over the layers that have the region."""
  layers = {
    path: region_rounding(kernel) for path, kernel in skeleton.square_kernels(params).items()
  }
  regions = dict.fromkeys(region for found in layers.values() for region in found)
  mean = {
    region: {
      number: float(
        np.mean([found[region][number] for found in layers.values() if region in found])
      )
      for number in ('levels', 'relative_error')
    }
    for region in regions
  }
  return {'layers': layers, 'mean': mean}

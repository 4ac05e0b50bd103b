"""Per-channel int8 rounding by kernel region, on kernels whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from acnet_jax.analysis import int8_rounding


def kernel_with(skeleton_value: float, corner_value: float, k: int = 3) -> np.ndarray:
  """One input and one output channel: `skeleton_value` on the centre cross,
  `corner_value` elsewhere."""
  kernel = np.full((k, k, 1, 1), corner_value)
  kernel[k // 2, :] = kernel[:, k // 2] = skeleton_value
  return kernel


def test_the_largest_weight_is_127_steps_and_rounds_exactly():
  found = int8_rounding.region_rounding(kernel_with(1.0, 1.0))
  assert found['skeleton'] == {'levels': pytest.approx(127), 'relative_error': 0.0}
  assert found['corners'] == {'levels': pytest.approx(127), 'relative_error': 0.0}
  assert 'border' not in found  # Only from 5x5 on.


def test_a_strong_skeleton_leaves_the_corners_few_steps_and_a_larger_error():
  # Corners at 1/100 of the skeleton: 1.27 steps, rounded to 1 (error 0.27 steps).
  found = int8_rounding.region_rounding(kernel_with(1.0, 0.01))
  assert found['corners']['levels'] == pytest.approx(1.27)
  assert found['corners']['relative_error'] == pytest.approx(0.27 / 1.27)
  assert found['skeleton']['relative_error'] == 0.0


def test_each_output_channel_has_its_own_scale():
  kernel = np.concatenate([kernel_with(1.0, 0.01), kernel_with(0.01, 0.01)], axis=3)
  quantized = int8_rounding.quantized(kernel)
  np.testing.assert_allclose(quantized[..., 1], kernel[..., 1])  # Its own max: exact.
  assert not np.allclose(quantized[..., 0], kernel[..., 0])


def test_a_model_averages_its_layers_by_region():
  params = {
    'a': {'kernel': kernel_with(1.0, 0.01)},
    'b': {'kernel': kernel_with(1.0, 1.0, k=5)},
    'dense': {'kernel': np.ones((4, 2))},
  }
  found = int8_rounding.model_rounding(params)
  assert sorted(found['layers']) == ['a', 'b']
  assert found['mean']['corners']['levels'] == pytest.approx((1.27 + 127) / 2)
  assert found['mean']['border']['levels'] == pytest.approx(127)  # Only b has one.

"""CIFAR augmentation and normalisation inside the jitted step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from acnet_jax.data.on_device import augment, normalize


def test_augment_crops_a_shifted_window_and_flips():
  images = jnp.arange(2 * 32 * 32 * 3, dtype=jnp.int32).reshape(2, 32, 32, 3).astype(jnp.uint8)
  out = augment(images, jax.random.key(0))
  assert out.shape == images.shape and out.dtype == images.dtype
  padded = np.pad(np.asarray(images), ((0, 0), (4, 4), (4, 4), (0, 0)))
  for n in range(2):
    windows = [padded[n, i : i + 32, j : j + 32] for i in range(9) for j in range(9)]
    windows += [w[:, ::-1] for w in windows]
    assert any(np.array_equal(np.asarray(out[n]), w) for w in windows)
  # Over many images both flips and several offsets occur.
  many = augment(jnp.tile(images[:1], (64, 1, 1, 1)), jax.random.key(1))
  assert len({np.asarray(m).tobytes() for m in many}) > 10


def test_normalize_is_per_channel():
  x = normalize(jnp.array([[0, 255, 51]], jnp.uint8), (0.5, 0.5, 0.2), (0.5, 0.25, 0.1))
  np.testing.assert_allclose(x, [[-1.0, 2.0, 0.0]], atol=1e-6)

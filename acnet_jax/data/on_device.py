"""What the jitted step does to a batch of uint8 images: CIFAR's augmentation
(in memory) and normalisation (both paths)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

CROP_PADDING = 4


def augment(images: jax.Array, key: jax.Array) -> jax.Array:
  """Zero-pad 4, random crop back to the original size, random horizontal flip."""
  n, h, w, _ = images.shape
  p = CROP_PADDING
  padded = jnp.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))
  crop_key, flip_key = jax.random.split(key)
  offsets = jax.random.randint(crop_key, (n, 2), 0, 2 * p + 1)
  flips = jax.random.bernoulli(flip_key, 0.5, (n,))

  def crop_and_flip(image, offset, flip):
    crop = jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, image.shape[-1]))
    return jnp.where(flip, crop[:, ::-1], crop)

  return jax.vmap(crop_and_flip)(padded, offsets, flips)


def normalize(images: jax.Array, mean: tuple[float, ...], std: tuple[float, ...]) -> jax.Array:
  """uint8 -> (x / 255 - mean) / std per channel, in float32."""
  x = images.astype(jnp.float32) / 255.0
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)

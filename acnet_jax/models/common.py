"""What the models share: dense layers with PyTorch's init, and the classifier head."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from acnet_jax.blocks.primitives import torch_default_init


def dense(features: int, name: str, dtype: DTypeLike) -> nn.Dense:
  """A dense layer initialised as torch.nn.Linear's weight."""
  return nn.Dense(features, kernel_init=torch_default_init, dtype=dtype, name=name)


def logits(x: jax.Array, num_classes: int, dtype: DTypeLike, name: str = 'linear') -> jax.Array:
  """The last dense layer; logits are float32 (float64 when computing in it)
  whatever the computation dtype."""
  y = dense(num_classes, name, dtype)(x)
  return y.astype(jnp.promote_types(y.dtype, jnp.float32))


def pooled_logits(x: jax.Array, num_classes: int, dtype: DTypeLike) -> jax.Array:
  """The head of the ResNets, WRN, DenseNet and MobileNet: global average pool, dense."""
  return logits(jnp.mean(x, axis=(1, 2)), num_classes, dtype)

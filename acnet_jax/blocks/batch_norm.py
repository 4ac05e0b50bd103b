"""BatchNorm with flax's variables and values: flax's `nn.BatchNorm(
use_fast_variance=False)` under the same variable names, so checkpoints and
fusion do not see the difference; its training op is `dispatch.train_batch_norm`
(on the CPU, a gradient in closed form: acnet_jax/xla_cpu/batch_norm.py).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from acnet_jax.xla_cpu.dispatch import normalize, train_batch_norm


class BatchNorm(nn.Module):
  """`nn.BatchNorm` over the last axis (two-pass variance; params and
  statistics in float32; output in `dtype`), its gradient `train_batch_norm`'s."""

  momentum: float
  epsilon: float
  use_affine: bool = True
  scale_init: float = 1.0
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool) -> jax.Array:
    shape = (x.shape[-1],)
    running_mean = self.variable('batch_stats', 'mean', jnp.zeros, shape, jnp.float32)
    running_var = self.variable('batch_stats', 'var', jnp.ones, shape, jnp.float32)
    if self.use_affine:
      scale = self.param('scale', nn.initializers.constant(self.scale_init), shape, jnp.float32)
      bias = self.param('bias', nn.initializers.zeros, shape, jnp.float32)
    else:
      scale, bias = jnp.ones(shape, jnp.float32), jnp.zeros(shape, jnp.float32)
    if use_running_average:
      y = normalize(x, running_mean.value, running_var.value, scale, bias, self.epsilon)
    else:
      y, (mean, var) = train_batch_norm(x, scale, bias, self.epsilon)
      if not self.is_initializing():
        running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
        running_var.value = self.momentum * running_var.value + (1 - self.momentum) * var
    return y.astype(self.dtype)

"""BatchNorm's training op: flax's values, and one hand-written gradient.

In training, a BN over the last axis computes, per channel (two-pass, in float32)

    mean = E[x],  var = E[(x - mean)^2],  rstd = 1 / sqrt(var + eps)
    y = (x - mean) * (rstd * scale) + bias

and its gradient has a closed form (x_hat = (x - mean) * rstd, n the values a
channel is reduced over):

    d_bias  = sum(dy)                d_scale = sum(dy * x_hat)
    dx      = scale * rstd * (dy - d_bias / n - x_hat * d_scale / n)

Differentiated op by op instead, the gradient goes through the two-pass
variance's chain: more reductions and passes over the activations. On these
CPUs the closed form made ResNet-56 acnet's train step 17% faster
(docs/performance.md), so it is the VJP on the CPU (`dispatch.train_batch_norm`);
other platforms keep autodiff's. On the CPU its sums, the statistics' and
the gradient's, are `pairwise_sum.channel_sums`: the same sums added in
another order, faster there and closer to exact. Elsewhere the forward pass
and the statistics are flax's `nn.BatchNorm(use_fast_variance=False)` op for
op; `normalize` (eval mode) is flax's everywhere.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from acnet_jax.xla_cpu.pairwise_sum import channel_sums

Stats = tuple[jax.Array, jax.Array]
# Per-channel sums over all axes but the last.
Sums = Callable[[jax.Array], jax.Array]


def xla_sums(x: jax.Array) -> jax.Array:
  """flax's reductions."""
  return x.sum(tuple(range(x.ndim - 1)))


def batch_statistics(x: jax.Array, sums: Sums = xla_sums) -> Stats:
  """Mean and biased variance over all axes but the last, in float32; two
  passes, as E[x^2] - E[x]^2 loses digits that the fusion tests see."""
  x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  n = x.size // x.shape[-1]
  mean = sums(x) / n
  return mean, sums(jnp.square(x - mean)) / n


def normalize(
  x: jax.Array, mean: jax.Array, var: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float
) -> jax.Array:
  """flax's `_normalize`, in its order of operations."""
  return (x - mean) * (jax.lax.rsqrt(var + epsilon) * scale) + bias


def plain_train_batch_norm(
  x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float, sums: Sums = xla_sums
) -> tuple[jax.Array, Stats]:
  """(y, (mean, var)) of a batch: differentiated by autodiff off the CPU, the
  closed form's primal (with `channel_sums`) on it."""
  mean, var = batch_statistics(x, sums)
  return normalize(x, mean, var, scale, bias, epsilon), (mean, var)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def cpu_train_batch_norm(
  x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float
) -> tuple[jax.Array, Stats]:
  return plain_train_batch_norm(x, scale, bias, epsilon, channel_sums)


def _forward(x, scale, bias, epsilon):
  out = plain_train_batch_norm(x, scale, bias, epsilon, channel_sums)
  mean, var = out[1]
  return out, (x, mean, jax.lax.rsqrt(var + epsilon), scale)


def _backward(_epsilon, residuals, cotangents):
  x, mean, rstd, scale = residuals
  dy, (d_mean, d_var) = cotangents
  n = dy.size // dy.shape[-1]
  centred = x - mean
  x_hat = centred * rstd
  d_bias = channel_sums(dy)
  d_scale = channel_sums(dy * x_hat)
  dx = (scale * rstd) * (dy - d_bias / n - x_hat * (d_scale / n))
  # The statistics' own cotangents (zero in training: they only feed the running averages).
  dx = dx + d_mean / n + centred * (d_var * 2 / n)
  return dx.astype(x.dtype), d_scale, d_bias


cpu_train_batch_norm.defvjp(_forward, _backward)

"""The ops blocks and models call, each in its CPU form on the CPU only.

An op whose hand-written form was measured faster on XLA:CPU (ReLU, pooling,
BN) runs it there; every other platform keeps the plain jax/flax op and
autodiff's gradient until measured (`jax.lax.platform_dependent` picks one at
lowering). BN's eval mode (`normalize`) is the same op on every platform.
The initialisation's compiler options are chosen by the default backend.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax

from acnet_jax.xla_cpu.batch_norm import (
  Stats,
  cpu_train_batch_norm,
  normalize,
  plain_train_batch_norm,
)
from acnet_jax.xla_cpu.init_compile import INIT_COMPILER_OPTIONS
from acnet_jax.xla_cpu.pooling import (
  Padding,
  Window,
  cpu_avg_pool,
  cpu_max_pool,
  plain_avg_pool,
  plain_max_pool,
)
from acnet_jax.xla_cpu.relu import cpu_relu

__all__ = [
  'avg_pool',
  'init_compiler_options',
  'max_pool',
  'normalize',
  'on_cpu_or_plain',
  'relu',
  'train_batch_norm',
]


def on_cpu_or_plain(
  cpu: Callable[..., Any], plain: Callable[..., Any], *operands: jax.Array, **static: Any
) -> Any:
  """cpu(*operands, **static) on the CPU, plain(*operands, **static) elsewhere."""
  return jax.lax.platform_dependent(
    *operands, cpu=functools.partial(cpu, **static), default=functools.partial(plain, **static)
  )


def init_compiler_options() -> dict[str, Any]:
  """Compiler options for a model's jitted init: level 0 on the CPU, none elsewhere."""
  return dict(INIT_COMPILER_OPTIONS) if jax.default_backend() == 'cpu' else {}


def relu(x: jax.Array) -> jax.Array:
  """jax.nn.relu's values and gradient; a select on the CPU."""
  return on_cpu_or_plain(cpu_relu, jax.nn.relu, x)


def max_pool(
  x: jax.Array, window: Window, strides: Window, padding: Padding = 'VALID'
) -> jax.Array:
  """flax.linen.max_pool's values and gradients (padding with -inf)."""
  return on_cpu_or_plain(
    cpu_max_pool, plain_max_pool, x, window=window, strides=strides, padding=padding
  )


def avg_pool(
  x: jax.Array, window: Window, strides: Window, padding: Padding = 'VALID'
) -> jax.Array:
  """flax.linen.avg_pool's values and gradients (count_include_pad=True)."""
  return on_cpu_or_plain(
    cpu_avg_pool, plain_avg_pool, x, window=window, strides=strides, padding=padding
  )


def train_batch_norm(
  x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float
) -> tuple[jax.Array, Stats]:
  """(y, (mean, var)) of a batch: the closed-form gradient on the CPU, autodiff's elsewhere."""
  return on_cpu_or_plain(
    cpu_train_batch_norm, plain_train_batch_norm, x, scale, bias, epsilon=epsilon
  )

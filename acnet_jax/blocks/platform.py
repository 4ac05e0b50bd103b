"""Where the project's own gradients run: on the CPU only.

An op whose hand-written VJP was measured faster on XLA:CPU (pooling, BN)
runs it there; every other platform keeps XLA's op and autodiff's gradient
until measured (`jax.lax.platform_dependent` picks one at lowering).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax


def on_cpu_or_plain(
  cpu: Callable[..., Any], plain: Callable[..., Any], *operands: jax.Array, **static: Any
) -> Any:
  """cpu(*operands, **static) on the CPU, plain(*operands, **static) elsewhere."""
  return jax.lax.platform_dependent(
    *operands, cpu=functools.partial(cpu, **static), default=functools.partial(plain, **static)
  )

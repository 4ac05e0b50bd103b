"""ReLU written as a select, so that XLA:CPU computes each activation once.

XLA's fusion counts `max(x, 0)` as a unary op, free to duplicate into every
consumer. At a residual block's output, `relu(shortcut + branch)`, each
consumer (the next convolution, the next block's sum, the backward pass's
mask and weight-gradient transposes) then recomputes the sum, and the sum
before it: ResNet-56's train step recomputed up to ten blocks' sums per
consumer, in the transposes' strided order. `select(x <= 0, 0, x)` reads two
full-size operands (the comparison and x), which XLA duplicates only into
consumers that can all fuse it, and a convolution cannot: the activation is
stored once and read.

Values are jax.nn.relu's bit for bit (-0 gives +0, NaN stays NaN); so is the
gradient (0 at 0). Other platforms keep jax.nn.relu (`dispatch.relu`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.custom_jvp
def cpu_relu(x: jax.Array) -> jax.Array:
  return jnp.where(x <= 0, jnp.zeros_like(x), x)


cpu_relu.defjvps(lambda g, ans, x: jax.lax.select(x > 0, g, jnp.zeros_like(g)))

"""Per-channel sums by pairwise halving: BatchNorm's reductions on the CPU.

XLA:CPU sums a [N, H, W, C] activation over N, H and W as reduce-windows that
read one channel at a time, strided by C, and writes the reduction's operand
out in full first. Here a reduce over runs of 8 adjacent pixels (into which
XLA fuses the operand's producer) is followed by adding halves of the array,
again and again: vectorised elementwise passes over ever smaller arrays.
Summing dy * x_hat over 64x32x32x16 took 1.53 ms as XLA's reduce and 0.35 ms
so (halved down to one row). The last LAST_ROWS rows are left to XLA's reduce, which XLA computes
once: as slices and adds, XLA fused them into every consumer of the sums and
recomputed them there per element (Cifar-quick's step got slower).
It is also nearly a pairwise sum: within (7 + ceil(log2 HW/8) + ceil(log2 N)
+ 7) U sum|x| of the exact sum (U = 2^-24 in float32), where XLA's reduce
measured ~80 U sum|x| off on such an array (docs/performance.md).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# Longer runs fuse no better and round more (measured: 8 and 32 alike).
RUN = 8
LAST_ROWS = 8


def pairwise_sum(x: jax.Array, axis: int) -> jax.Array:
  """Sum over `axis`: its halves added elementwise until one slice is left (an
  odd slice out is carried to the next round)."""
  return jnp.squeeze(halve_until(x, axis, rows=1), axis)


def halve_until(x: jax.Array, axis: int, rows: int) -> jax.Array:
  """x's halves along `axis` added elementwise until at most `rows` are left."""
  while (n := x.shape[axis]) > rows:
    half = n // 2
    pairs = jax.lax.slice_in_dim(x, 0, half, axis=axis) + jax.lax.slice_in_dim(
      x, half, 2 * half, axis=axis
    )
    x = (
      pairs
      if n % 2 == 0
      else jnp.concatenate([pairs, jax.lax.slice_in_dim(x, 2 * half, n, axis=axis)], axis)
    )
  return x


def channel_sums(x: jax.Array) -> jax.Array:
  """Sum over all axes but the last: runs of up to RUN adjacent pixels by
  XLA's reduce (which fuses the array's producer), then pairwise within each
  example, then over the batch down to LAST_ROWS rows, then XLA's reduce."""
  per_example = x.reshape(x.shape[0], -1, x.shape[-1])
  run = math.gcd(per_example.shape[1], RUN)
  runs = per_example.reshape(x.shape[0], -1, run, x.shape[-1]).sum(2)
  per_example = pairwise_sum(runs, axis=1)
  return halve_until(per_example, axis=0, rows=LAST_ROWS).sum(0)

"""Max and average pooling whose gradients XLA:CPU computes fast, exactly.

On the CPU, XLA takes a max-pool gradient through a variadic reduce-window
that carries four index arrays and a scatter (select-and-scatter's lowering):
a 3x3/2 pool's gradient cost 19x its forward pass and a quarter of the whole
Cifar-quick train step. Here the gradient is built from the forward's input
and output instead: for each window offset (i, j), the output gradient goes
where the input at that offset is its window's first maximum (select-and-
scatter's rule, so the values are XLA's), and the offsets' contributions are
laid back onto the input grid one stride phase at a time, then interleaved.
Every op works on output-sized arrays, which XLA fuses and vectorises.
An average pool's gradient is the same construction with every offset taken.

Other platforms keep XLA's own gradients (`dispatch.max_pool`, `dispatch.avg_pool`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

Window = tuple[int, int]
Padding = str | Sequence[tuple[int, int]]


def spatial_padding(padding: Padding) -> tuple[tuple[int, int], tuple[int, int]]:
  if padding == 'VALID':
    return (0, 0), (0, 0)
  (top, bottom), (left, right) = padding
  return (top, bottom), (left, right)


def window_views(
  x: jax.Array, window: Window, strides: Window, out_hw: tuple[int, int]
) -> list[jax.Array]:
  """x[:, i::sh, j::sw] cut to the output's size, for every window offset
  (i, j), row by row: the input each output pixel sees at that offset."""
  (kh, kw), (sh, sw), (ho, wo) = window, strides, out_hw
  n, _, _, c = x.shape
  return [
    jax.lax.slice(
      x, (0, i, j, 0), (n, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c), (1, sh, sw, 1)
    )
    for i in range(kh)
    for j in range(kw)
  ]


def onto_input_grid(
  parts: list[jax.Array], window: Window, strides: Window, in_hw: tuple[int, int]
) -> jax.Array:
  """The sum over offsets (i, j) of parts[i * kw + j] (output-sized) placed at
  input rows sh * p + i and columns sw * q + j.

  Input rows of one phase a = row mod sh receive from the offsets i = a, a +
  sh, ..., each shifted down by i // sh: the phases are summed at the
  output's resolution and interleaved once."""
  (kh, kw), (sh, sw), (h, w) = window, strides, in_hw
  n, ho, wo, c = parts[0].shape
  hq, wq = -(-h // sh), -(-w // sw)
  phases = []
  for a in range(sh):
    row = []
    for b in range(sw):
      total = jnp.zeros((n, hq, wq, c), parts[0].dtype)
      for i in range(a, kh, sh):
        for j in range(b, kw, sw):
          m, k = i // sh, j // sw
          cut = parts[i * kw + j][:, : hq - m, : wq - k]
          total = total + jnp.pad(
            cut, ((0, 0), (m, hq - m - cut.shape[1]), (k, wq - k - cut.shape[2]), (0, 0))
          )
      row.append(total)
    phases.append(jnp.stack(row, axis=3))  # n, hq, wq, sw, c
  grid = jnp.stack(phases, axis=2)  # n, hq, sh, wq, sw, c
  return grid.reshape(n, hq * sh, wq * sw, c)[:, :h, :w]


def reduce_window(
  x: jax.Array, init: float, op, window: Window, strides: Window, padding: Padding
) -> jax.Array:
  """A Python scalar `init`: with it JAX knows the monoid (max, add) and its gradient."""
  pads = ((0, 0), *spatial_padding(padding), (0, 0))
  return jax.lax.reduce_window(x, init, op, (1, *window, 1), (1, *strides, 1), pads)


def padded(x: jax.Array, padding: Padding, value: float) -> jax.Array:
  (top, bottom), (left, right) = spatial_padding(padding)
  return jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def unpadded(grad: jax.Array, padding: Padding, in_hw: tuple[int, int]) -> jax.Array:
  (top, _), (left, _) = spatial_padding(padding)
  return grad[:, top : top + in_hw[0], left : left + in_hw[1]]


# ---------------------------------------------------------------------- max


def plain_max_pool(x: jax.Array, window: Window, strides: Window, padding: Padding) -> jax.Array:
  return reduce_window(x, -jnp.inf, jax.lax.max, window, strides, padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def cpu_max_pool(x: jax.Array, window: Window, strides: Window, padding: Padding) -> jax.Array:
  return plain_max_pool(x, window, strides, padding)


def _max_pool_forward(x, window, strides, padding):
  y = plain_max_pool(x, window, strides, padding)
  return y, (x, y)


@jax.named_scope('max_pool_gradient')  # So a profile tells its ops apart.
def _max_pool_backward(window, strides, padding, residuals, dy):
  x, y = residuals
  xp = padded(x, padding, -jnp.inf)
  parts, taken = [], jnp.zeros(y.shape, bool)
  for view in window_views(xp, window, strides, y.shape[1:3]):
    first = (view == y) & ~taken  # The window's first maximum, as select-and-scatter.
    taken = taken | first
    parts.append(jnp.where(first, dy, jnp.zeros_like(dy)))
  grad = onto_input_grid(parts, window, strides, xp.shape[1:3])
  return (unpadded(grad, padding, x.shape[1:3]),)


cpu_max_pool.defvjp(_max_pool_forward, _max_pool_backward)


# ------------------------------------------------------------------ average


def plain_avg_pool(x: jax.Array, window: Window, strides: Window, padding: Padding) -> jax.Array:
  """Zero padding counted, as torch's AvgPool2d and flax's avg_pool count it."""
  return reduce_window(x, 0.0, jax.lax.add, window, strides, padding) / (window[0] * window[1])


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def cpu_avg_pool(x: jax.Array, window: Window, strides: Window, padding: Padding) -> jax.Array:
  return plain_avg_pool(x, window, strides, padding)


def _avg_pool_forward(x, window, strides, padding):
  return plain_avg_pool(x, window, strides, padding), x.shape


@jax.named_scope('avg_pool_gradient')
def _avg_pool_backward(window, strides, padding, shape, dy):
  (top, bottom), (left, right) = spatial_padding(padding)
  in_hw = (shape[1] + top + bottom, shape[2] + left + right)
  share = dy / (window[0] * window[1])
  grad = onto_input_grid([share] * (window[0] * window[1]), window, strides, in_hw)
  return (unpadded(grad, padding, shape[1:3]),)


cpu_avg_pool.defvjp(_avg_pool_forward, _avg_pool_backward)

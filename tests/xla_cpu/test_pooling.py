"""Pooling with XLA:CPU-fast gradients equals flax's pooling: the same values,
and gradients equal to XLA's up to the order of the few sums where windows
overlap, ties included (the gradient goes to a window's first maximum)."""

from __future__ import annotations

import itertools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acnet_jax.xla_cpu import dispatch

U = 2.0**-24  # float32's unit roundoff.
# (window, strides, padding, input height and width)
CASES = [
  ((3, 3), (2, 2), 'VALID', (32, 32)),
  ((3, 3), (2, 2), 'VALID', (15, 14)),
  ((3, 3), (2, 2), ((1, 1), (1, 1)), (17, 16)),
  ((2, 2), (2, 2), 'VALID', (8, 9)),
  ((5, 5), (1, 1), ((2, 2), (2, 2)), (9, 9)),
  ((3, 3), (1, 1), 'VALID', (7, 8)),
  ((3, 3), (2, 2), ((1, 1), (1, 1)), (8, 8)),
]


def inputs(height: int, width: int, ties: bool) -> jax.Array:
  x = jax.random.normal(jax.random.key(height * width), (2, height, width, 3))
  return jnp.round(x * 2) / 2 if ties else x  # Rounded: many equal maxima per window.


def overlap(window, strides) -> int:
  """How many windows can share an input pixel: the terms of its gradient."""
  return math.ceil(window[0] / strides[0]) * math.ceil(window[1] / strides[1])


@pytest.mark.parametrize('case,ties', list(itertools.product(CASES, [False, True])))
def test_max_pool_values_and_gradients_are_flaxs(case, ties):
  window, strides, padding, (height, width) = case
  x = inputs(height, width, ties)
  ours = lambda x: dispatch.max_pool(x, window, strides, padding)
  flax = lambda x: nn.max_pool(x, window, strides, padding)
  y = jax.jit(ours)(x)
  np.testing.assert_array_equal(y, jax.jit(flax)(x))
  dy = jax.random.normal(jax.random.key(1), y.shape)
  grad = lambda pool: jax.jit(lambda x: jax.vjp(pool, x)[1](dy)[0])(x)
  expected, actual = grad(flax), grad(ours)
  bound = overlap(window, strides) * U * float(jnp.max(jnp.abs(dy)))
  np.testing.assert_allclose(actual, expected, rtol=0, atol=bound)
  # Not vacuous: the gradient goes to one pixel per window, not spread on ties.
  assert int(jnp.sum(expected != 0)) <= y.size


@pytest.mark.parametrize('case', CASES)
def test_avg_pool_values_and_gradients_are_flaxs(case):
  window, strides, padding, (height, width) = case
  x = inputs(height, width, ties=False)
  ours = lambda x: dispatch.avg_pool(x, window, strides, padding)
  flax = lambda x: nn.avg_pool(x, window, strides, padding)
  y = jax.jit(ours)(x)
  np.testing.assert_allclose(y, jax.jit(flax)(x), rtol=0, atol=math.prod(window) * U * 4)
  dy = jax.random.normal(jax.random.key(2), y.shape)
  grad = lambda pool: jax.jit(lambda x: jax.vjp(pool, x)[1](dy)[0])(x)
  bound = overlap(window, strides) * U * float(jnp.max(jnp.abs(dy)))
  np.testing.assert_allclose(grad(ours), grad(flax), rtol=0, atol=bound)


def test_the_cpu_gradient_is_what_the_cpu_lowering_runs():
  """The custom gradient, not XLA's, lowered for the CPU (whatever this
  machine's backend): no select-and-scatter in the program; lowered for cuda,
  XLA's select-and-scatter."""
  x = inputs(16, 16, ties=False)
  traced = jax.jit(jax.grad(lambda x: jnp.sum(dispatch.max_pool(x, (3, 3), (2, 2))))).trace(x)
  hlo = {p: traced.lower(lowering_platforms=(p,)).as_text() for p in ('cpu', 'cuda')}
  assert 'select_and_scatter' not in hlo['cpu'] and 'select-and-scatter' not in hlo['cpu']
  assert 'select_and_scatter' in hlo['cuda']

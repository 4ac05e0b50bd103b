"""The select-form ReLU equals jax.nn.relu bit for bit, value and gradient, and
is what keeps XLA:CPU from recomputing a residual chain in every consumer; it
runs on the CPU only (`dispatch.relu`), other platforms keep jax.nn.relu."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import acnet_jax  # noqa: F401  (the project's XLA:CPU flag, as in training)
from acnet_jax.xla_cpu import canaries, dispatch
from acnet_jax.xla_cpu.relu import cpu_relu

SPECIAL = [-0.0, 0.0, -1.5, 2.5, np.nan, -np.inf, np.inf, 1e-45, -1e-45]


def bits(x: jax.Array) -> np.ndarray:
  x = np.asarray(x.astype(jnp.float32))
  return x.view(np.uint32)


# The select form, and what this machine's backend runs.
FORMS = pytest.mark.parametrize('relu', [cpu_relu, dispatch.relu], ids=['cpu_relu', 'dispatch'])


@FORMS
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_values_are_jax_relus_bit_for_bit(relu, dtype):
  x = jnp.concatenate([jnp.array(SPECIAL), jax.random.normal(jax.random.key(0), (1000,))])
  x = x.astype(dtype)
  np.testing.assert_array_equal(bits(jax.jit(relu)(x)), bits(jax.jit(jax.nn.relu)(x)))


@FORMS
def test_gradient_is_jax_relus_zero_at_zero(relu):
  x = jnp.concatenate(
    [
      jnp.array([-0.0, 0.0, -1.5, 2.5, 1e-45, -1e-45]),
      jax.random.normal(jax.random.key(1), (1000,)),
    ]
  )
  cotangent = jax.random.normal(jax.random.key(2), x.shape)
  ours = jax.vjp(relu, x)[1](cotangent)[0]
  plain = jax.vjp(jax.nn.relu, x)[1](cotangent)[0]
  np.testing.assert_array_equal(bits(ours), bits(plain))
  assert ours[0] == 0 and ours[1] == 0  # ReLU'(0) = 0, as in jax.nn.relu and PyTorch.
  np.testing.assert_array_equal(
    jax.jvp(relu, (x,), (cotangent,))[1], jax.jvp(jax.nn.relu, (x,), (cotangent,))[1]
  )


def test_residual_outputs_are_stored_once_on_the_cpu():
  # A property of XLA:CPU's fusion (compiled for the CPU, whatever the default
  # backend). Whether jax.nn.relu still recomputes them: its canary.
  assert canaries.longest_recomputed_chain(dispatch.relu) <= 2


def test_the_select_is_what_the_cpu_lowering_runs_and_jax_relu_elsewhere():
  traced = jax.jit(dispatch.relu).trace(jnp.zeros((4, 3)))
  hlo = {p: traced.lower(lowering_platforms=(p,)).as_text() for p in ('cpu', 'cuda', 'tpu')}
  assert 'stablehlo.select' in hlo['cpu'] and 'stablehlo.maximum' not in hlo['cpu']
  for p in ('cuda', 'tpu'):
    assert 'stablehlo.maximum' in hlo[p] and 'stablehlo.select' not in hlo[p]

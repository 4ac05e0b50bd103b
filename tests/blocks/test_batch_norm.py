"""The project's BatchNorm is flax's: the same variables, forward values,
running statistics and eval mode; its closed-form gradient is autodiff's up to
float32 rounding (and equal to it in float64)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acnet_jax.blocks.batch_norm import BatchNorm
from acnet_jax.xla_cpu import batch_norm as bn
from acnet_jax.xla_cpu import dispatch

U = 2.0**-24  # float32's unit roundoff.
MOMENTUM, EPSILON = 0.9, 1e-5
SHAPE = (8, 6, 6, 16)


def ours(use_affine: bool = True, scale: float = 1.0, dtype=jnp.float32) -> BatchNorm:
  return BatchNorm(
    momentum=MOMENTUM, epsilon=EPSILON, use_affine=use_affine, scale_init=scale, dtype=dtype
  )


def flaxs(use_affine: bool = True, scale: float = 1.0, dtype=jnp.float32) -> nn.BatchNorm:
  return nn.BatchNorm(
    momentum=MOMENTUM,
    epsilon=EPSILON,
    use_scale=use_affine,
    use_bias=use_affine,
    scale_init=nn.initializers.constant(scale),
    use_fast_variance=False,
    dtype=dtype,
  )


def batch(dtype=jnp.float32, seed: int = 0) -> jax.Array:
  # An offset mean and a spread scale, as a conv's output has.
  x = jax.random.normal(jax.random.key(seed), SHAPE) * 3.0 + 1.5
  return x.astype(dtype)


def trained_variables(variables: dict, seed: int) -> dict:
  """Variables away from their init, so scale and statistics matter."""
  leaves, tree = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(
    tree, [leaf + 0.5 * jnp.abs(jax.random.normal(k, leaf.shape)) for leaf, k in zip(leaves, keys)]
  )


def apply(layer: nn.Module, variables: dict, x: jax.Array, train: bool):
  """(y, the new running statistics)."""
  return layer.apply(variables, x, use_running_average=not train, mutable=['batch_stats'])


def to_float64(tree):
  return jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), tree)


@pytest.mark.parametrize('use_affine,scale', [(True, 1.0), (True, 0.3), (False, 1.0)])
def test_variables_eval_and_float64_training_are_flaxs(use_affine, scale):
  x = batch()
  variables = ours(use_affine, scale).init(jax.random.key(0), x, use_running_average=False)
  expected = flaxs(use_affine, scale).init(jax.random.key(0), x, use_running_average=False)
  assert jax.tree.structure(variables) == jax.tree.structure(expected)
  jax.tree.map(np.testing.assert_array_equal, variables, expected)
  variables = trained_variables(variables, 1)
  y, _ = apply(ours(use_affine, scale), variables, x, train=False)
  y_flax, _ = apply(flaxs(use_affine, scale), variables, x, train=False)
  # flax's operations in flax's order: a few roundings apart at most.
  np.testing.assert_allclose(y, y_flax, rtol=0, atol=4 * U * float(jnp.max(jnp.abs(y_flax))))
  # Training's statistics are summed in another order on the CPU (pairwise_sum):
  # the same function, which float64 shows.
  with jax.enable_x64(True):
    x64, variables64 = x.astype(jnp.float64), to_float64(variables)
    actual = apply(ours(use_affine, scale, jnp.float64), variables64, x64, train=True)
    expected = apply(flaxs(use_affine, scale, jnp.float64), variables64, x64, train=True)
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12), actual, expected
    )


def forward_bounds(variables: dict, x: jax.Array):
  """Bounds on a float32 training forward's distance from the exact one:
  (y, running statistics). The mean and variance are sums of n terms, each
  within (n - 1) U sum|terms| of exact in any order (doubled for the division
  and the mean inside the variance's terms); y carries them through
  (x - mean) * rstd * scale + bias, plus a few roundings of its own."""
  x = np.asarray(x, np.float64)
  params = {k: np.asarray(v, np.float64) for k, v in variables.get('params', {}).items()}
  stats = {k: np.asarray(v, np.float64) for k, v in variables['batch_stats'].items()}
  axes = tuple(range(x.ndim - 1))
  n = x.size // x.shape[-1]
  mean, var = x.mean(axes), x.var(axes)
  mean_error = 2 * n * U * np.abs(x).mean(axes)
  var_error = 2 * n * U * np.square(np.abs(x) + np.abs(mean)).mean(axes)
  rstd = 1 / np.sqrt(var + EPSILON)
  rstd_relative_error = var_error / (2 * (var + EPSILON)) + 2 * U
  scale, bias = np.abs(params.get('scale', 1.0)), np.abs(params.get('bias', 0.0))
  centred = np.abs(x - mean)
  y_magnitude = centred * rstd * scale + bias
  y_error = scale * rstd * (mean_error + centred * rstd_relative_error) + 4 * U * y_magnitude
  statistics_error = {
    'mean': (1 - MOMENTUM) * mean_error + 2 * U * np.abs(stats['mean']) + 2 * U * np.abs(mean),
    'var': (1 - MOMENTUM) * var_error + 2 * U * np.abs(stats['var']) + 2 * U * var,
  }
  return y_error, {'batch_stats': statistics_error}


@pytest.mark.parametrize('use_affine,scale', [(True, 1.0), (True, 0.3), (False, 1.0)])
def test_float32_training_forward_is_within_float32_rounding_of_float64(use_affine, scale):
  """Ours and (as a check of the bound) flax's."""
  x = batch()
  variables = trained_variables(
    ours(use_affine, scale).init(jax.random.key(0), x, use_running_average=False), 1
  )
  with jax.enable_x64(True):
    exact = apply(
      flaxs(use_affine, scale, jnp.float64),
      to_float64(variables),
      x.astype(jnp.float64),
      train=True,
    )
  bounds = forward_bounds(variables, x)
  for layer in (ours(use_affine, scale), flaxs(use_affine, scale)):
    jax.tree.map(
      lambda a, e, bound: np.testing.assert_array_less(
        np.abs(np.asarray(a, np.float64) - np.asarray(e)), bound
      ),
      apply(layer, variables, x, train=True),
      exact,
      bounds,
    )


def test_the_plain_forward_is_flaxs():
  """What other platforms run: flax's reductions, so flax's values."""
  x = batch()
  scale, bias = jnp.linspace(0.5, 2.0, SHAPE[-1]), jnp.linspace(-1.0, 1.0, SHAPE[-1])
  y, (mean, var) = bn.plain_train_batch_norm(x, scale, bias, EPSILON)
  y_flax, _ = flaxs().apply(
    {
      'params': {'scale': scale, 'bias': bias},
      'batch_stats': {'mean': jnp.zeros(SHAPE[-1]), 'var': jnp.ones(SHAPE[-1])},
    },
    x,
    use_running_average=False,
    mutable=['batch_stats'],
  )
  np.testing.assert_allclose(y, y_flax, rtol=0, atol=4 * U * float(jnp.max(jnp.abs(y_flax))))
  np.testing.assert_array_equal(mean, x.mean((0, 1, 2)))


def gradients(layer: nn.Module, variables: dict, x: jax.Array, dy: jax.Array):
  def loss(params, x):
    y, _ = layer.apply(
      {**variables, 'params': params}, x, use_running_average=False, mutable=['batch_stats']
    )
    return jnp.vdot(y, dy)

  return jax.jit(jax.grad(loss, (0, 1)))(variables['params'], x)


def test_gradients_are_autodiffs_in_float64():
  with jax.enable_x64(True):
    x, dy = batch(jnp.float64), batch(jnp.float64, seed=1)
    variables = trained_variables(ours().init(jax.random.key(0), x, use_running_average=False), 2)
    actual = gradients(ours(dtype=jnp.float64), variables, x, dy)
    expected = gradients(flaxs(dtype=jnp.float64), variables, x, dy)
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12), actual, expected
    )


def rounding_bounds(variables: dict, x: jax.Array, dy: jax.Array):
  """Bounds on a float32 BN gradient's distance from the exact one, shaped as
  `gradients`' output. Each is a sum over a channel's n values, or built from
  such sums: a float32 sum of n terms is within (n - 1) U sum|terms| of the
  exact sum in any order, and the statistics inside the terms carry an error of
  the same kind, hence 2 n U times the terms' magnitude. |x_hat| is bounded by
  (|x| + |mean|) rstd, what enters the subtraction."""
  x, dy = np.asarray(x, np.float64), np.asarray(dy, np.float64)
  scale = np.asarray(variables['params']['scale'], np.float64)
  axes = tuple(range(x.ndim - 1))
  n = x.size // x.shape[-1]
  mean = x.mean(axes)
  rstd = 1 / np.sqrt(x.var(axes) + EPSILON)
  x_hat = (np.abs(x) + np.abs(mean)) * rstd
  bias_terms, scale_terms = np.abs(dy).sum(axes), (np.abs(dy) * x_hat).sum(axes)
  dx_terms = np.abs(scale) * rstd * (np.abs(dy) + bias_terms / n + x_hat * scale_terms / n)
  return ({'bias': 2 * n * U * bias_terms, 'scale': 2 * n * U * scale_terms}, 2 * n * U * dx_terms)


def test_float32_gradients_are_within_float32_rounding_of_float64():
  """Ours and (as a check of the bound) autodiff's, against float64."""
  x, dy = batch(), batch(seed=1)
  variables = trained_variables(ours().init(jax.random.key(0), x, use_running_average=False), 2)
  with jax.enable_x64(True):
    exact = gradients(
      flaxs(dtype=jnp.float64),
      jax.tree.map(lambda v: v.astype(jnp.float64), variables),
      x.astype(jnp.float64),
      dy.astype(jnp.float64),
    )
  bounds = rounding_bounds(variables, x, dy)
  for layer in (ours(), flaxs()):
    jax.tree.map(
      lambda a, e, bound: np.testing.assert_array_less(
        np.abs(np.asarray(a, np.float64) - np.asarray(e)), bound
      ),
      gradients(layer, variables, x, dy),
      exact,
      bounds,
    )


def test_bfloat16_output_and_gradients():
  x, dy = batch(jnp.bfloat16), batch(jnp.bfloat16, seed=1)
  variables = ours().init(jax.random.key(0), x, use_running_average=False)
  y, _ = ours(dtype=jnp.bfloat16).apply(
    variables, x, use_running_average=False, mutable=['batch_stats']
  )
  y_flax, _ = flaxs(dtype=jnp.bfloat16).apply(
    variables, x, use_running_average=False, mutable=['batch_stats']
  )
  assert y.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(y_flax, np.float32))
  (d_params, dx), (d_params_flax, dx_flax) = (
    gradients(layer, variables, x, dy)
    for layer in (ours(dtype=jnp.bfloat16), flaxs(dtype=jnp.bfloat16))
  )
  assert dx.dtype == jnp.bfloat16
  # One bfloat16 rounding of the result apart (2^-8 relative), the sums in float32.
  np.testing.assert_allclose(
    np.asarray(dx, np.float32),
    np.asarray(dx_flax, np.float32),
    rtol=0,
    atol=2**-7 * float(jnp.max(jnp.abs(dx_flax))),
  )
  # Both computed in float32 from the same bfloat16 values: each within its bound of exact.
  jax.tree.map(
    lambda a, b, bound: np.testing.assert_array_less(np.abs(a - b), 2 * bound),
    d_params,
    d_params_flax,
    rounding_bounds(variables, x, dy)[0],
  )


def test_the_statistics_cotangents_are_differentiated_too():
  """The closed form is the whole VJP, not only the path through y."""
  with jax.enable_x64(True):
    x = batch(jnp.float64)
    scale, bias = jnp.linspace(0.5, 2.0, SHAPE[-1]), jnp.linspace(-1.0, 1.0, SHAPE[-1])
    cotangents = (
      batch(jnp.float64, seed=1),
      (jnp.linspace(-1, 1, SHAPE[-1]), jnp.linspace(2, 3, SHAPE[-1])),
    )
    vjp = lambda f: jax.vjp(lambda *a: f(*a, EPSILON), x, scale, bias)[1](cotangents)
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12),
      vjp(bn.cpu_train_batch_norm),
      vjp(bn.plain_train_batch_norm),
    )


def test_the_closed_form_is_what_runs_on_the_cpu():
  # Computed on the CPU (where the closed form runs), whatever the default backend.
  with jax.default_device(jax.devices('cpu')[0]):
    x, dy = batch(), batch(seed=1)
    scale, bias = jnp.full(SHAPE[-1], 1.3), jnp.full(SHAPE[-1], 0.2)
    grad = lambda f: jax.jit(
      jax.grad(lambda x, s, b: jnp.vdot(f(x, s, b, EPSILON)[0], dy), (0, 1, 2))
    )(x, scale, bias)
    closed_form = grad(bn.cpu_train_batch_norm)
    jax.tree.map(np.testing.assert_array_equal, grad(dispatch.train_batch_norm), closed_form)
    # Not vacuous: autodiff's gradient differs from the closed form in its last bits.
    assert any(
      not np.array_equal(a, b)
      for a, b in zip(
        jax.tree.leaves(grad(bn.plain_train_batch_norm)), jax.tree.leaves(closed_form)
      )
    )
